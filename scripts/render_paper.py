"""Render the paper (Markdown and LaTeX) from the summary files of one profile.

    python scripts/render_paper.py --config config/config.yaml --summary-dir data/quick/summary \
        --figures-dir figures/quick --md paper/build/quick/paper.md \
        --tex paper/build/quick/paper.tex

A PDF: `latexmk -pdf paper.tex` in the output directory (Snakemake does it when a TeX
engine is installed; on Debian: apt-get install texlive-latex-base texlive-latex-recommended
texlive-fonts-recommended latexmk).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.report.paper_context import build_context  # noqa: E402
from sdsbench.report.paper_format import Latex, Markdown, render  # noqa: E402
from sdsbench.rundir import write_text_atomic  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent.parent / "paper" / "templates"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--summary-dir", required=True)
    parser.add_argument("--figures-dir", required=True)
    parser.add_argument("--md", required=True)
    parser.add_argument("--tex", required=True)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    for out, fmt, template in ((args.md, Markdown(), "paper.md.j2"),
                               (args.tex, Latex(), "paper.tex.j2")):
        context = build_context(args.summary_dir, args.figures_dir, Path(out).parent, config)
        write_text_atomic(out, render(TEMPLATES, template, fmt, context))
        print(f"paper -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
