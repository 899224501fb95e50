"""Atomic run directories: a run writes into ``<out>.partial`` and is renamed to
``<out>`` only when it completed, so an interrupted run never leaves a directory
that Snakemake (or a reader) would take as a finished result."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMPLETE_MARKER = "COMPLETE"
REJECT_COLUMNS = ("reason", "count")  # rejects.csv: every pipeline, every contract reason


@contextmanager
def atomic_run_dir(out: str | Path) -> Iterator[Path]:
    """Yield a scratch directory; on success rename it to ``out``, on failure keep it
    aside as ``<out>.failed`` (for debugging) and re-raise."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    failed = out.with_name(out.name + ".failed")
    for stale in (partial, failed):
        if stale.exists():
            shutil.rmtree(stale)
    if out.exists():
        shutil.rmtree(out)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        partial.rename(failed)
        raise
    (partial / COMPLETE_MARKER).write_text("")
    partial.rename(out)


def write_json_atomic(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def csv_text(columns: tuple[str, ...] | list[str], rows: list[tuple]) -> str:
    """A CSV header and ``rows`` (tuples in the order of ``columns``) as text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def write_csv_atomic(path: str | Path, columns: tuple[str, ...] | list[str],
                     rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts keyed by ``columns``) as CSV with a header."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_rejects(path: str | Path, counts: dict[str, int]) -> None:
    """rejects.csv: rejected events per reason, sorted by reason."""
    write_csv_atomic(path, REJECT_COLUMNS,
                     [{"reason": r, "count": n} for r, n in sorted(counts.items())])


def is_complete(run_dir: str | Path) -> bool:
    return (Path(run_dir) / COMPLETE_MARKER).exists()
