"""What the Spark and Flink pass-through jobs (``engines/<engine>/passthrough.py``) share:
the command line, the passes and the result of a pass. Standard library only (both engine
virtualenvs import it)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdsbench.rundir import write_json_atomic

MODES = ("raw", "parse")  # read the records; read and parse them


def parse_args(description: str, engine_options: Callable[[argparse.ArgumentParser], None],
               argv: list[str] | None = None) -> argparse.Namespace:
    """The common options (bootstrap, topic, out, jars, passes) and the engine's own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--jars", required=True, help="comma-separated connector jars")
    parser.add_argument("--passes", default=",".join(MODES))
    engine_options(parser)
    args = parser.parse_args(argv)
    args.passes = args.passes.split(",")
    if not set(args.passes) <= set(MODES):
        parser.error(f"--passes: each one of {MODES}")
    return args


def pass_result(mode: str, records: int, counted: int, first_ms: float, last_ms: float,
                started_s: float, **extra: Any) -> dict[str, Any]:
    """One pass: records read, events counted, the processing span and the rate."""
    seconds = (last_ms - first_ms) / 1000.0
    return {"mode": mode, "records": records, "counted": counted, "seconds": seconds,
            "eps": records / seconds if seconds > 0 else None,
            "wall_s": round(time.time() - started_s, 3), **extra}


def write_result(out: Path, engine: str, settings: dict[str, Any],
                 passes: list[dict[str, Any]]) -> None:
    write_json_atomic(out, {"engine": engine, **settings, "passes": passes})
