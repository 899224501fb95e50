"""Draw one figure from the summary files: ``python scripts/plot.py <figure-name> ...``.

Figure names are the modules of sdsbench/plots (one per figure, each with its CAPTION).

    python scripts/plot.py a1_a2_throughput_latency --config config/config.yaml \
        --summary-dir data/quick/summary --png figures/quick/a1_a2_throughput_latency.png
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.plots.common import FigureContext, save  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", help="module name in sdsbench/plots")
    add_config_arguments(parser)
    parser.add_argument("--summary-dir", required=True)
    parser.add_argument("--png", required=True)
    parser.add_argument("--pdf")
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    module = importlib.import_module(f"sdsbench.plots.{args.figure}")
    ctx = FigureContext.from_config(args.summary_dir, config)
    save(module.draw(ctx), args.png, args.pdf)
    print(f"{args.figure} -> {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
