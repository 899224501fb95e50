"""engines.spark.batch_floor, run for real on a few short batches: one JVM per repetition
measures every variant in a rotated order, and code is generated every batch only where
the watermark is compiled in (the interpreted variant generates none)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from engines.common.jvm_driver import engine_python, venv_python
from sdsbench.paths import REPO_ROOT

pytestmark = pytest.mark.jvm


@pytest.mark.timeout(400)
@pytest.mark.skipif(not venv_python("spark").exists(), reason="no Spark venv")
def test_window_variants_measure_batches_and_code_generated_per_batch(tmp_path: Path) -> None:
    out = tmp_path / "floor.csv"
    done = subprocess.run(
        [str(engine_python("spark")), "-m", "engines.spark.batch_floor", "--out", str(out),
         "--repetitions", "2", "--variants", "window", "window-interpreted",
         "--warmup-s", "3", "--measure-s", "5", "--rows-per-batch", "1000"],
        capture_output=True, text=True, timeout=380, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = list(csv.DictReader(out.open()))
    # Repetition 2 measures in the other order: each variant comes first once.
    assert [(r["repetition"], r["position"], r["variant"]) for r in measured] == [
        ("1", "1", "window"), ("1", "2", "window-interpreted"),
        ("2", "1", "window-interpreted"), ("2", "2", "window")]
    rows = {r["variant"]: r for r in measured}
    for row in rows.values():
        assert int(row["batches"]) >= 2 and float(row["cpu_ms_per_batch"]) > 0
        assert row["rows_per_batch"] == "1000"
    assert float(rows["window"]["codegen_per_batch"]) > 0.5  # the watermark moves every batch
    assert float(rows["window-interpreted"]["codegen_per_batch"]) == 0
    assert "CPU-ms per batch, median [min-max] of 2" in done.stdout
