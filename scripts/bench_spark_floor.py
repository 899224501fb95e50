"""Spark's own per-micro-batch cost on this machine (engines.spark.batch_floor), with the
CTR job's trigger, master and shuffle partitions and the rows a batch holds at the
profile's fixed rate: a figure input, not a test.

    .venv/main/bin/python scripts/bench_spark_floor.py --config config/config.yaml \
        --out data/quick/bench/spark_floor

Writes floor.csv (one row per variant and repetition) and the job's output as log.txt.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.common.jvm_driver import engine_python  # noqa: E402
from sdsbench.config import add_config_arguments, config_from_arguments  # noqa: E402
from sdsbench.paths import REPO_ROOT  # noqa: E402
from sdsbench.rundir import atomic_run_dir  # noqa: E402


def floor_command(config: dict, out_csv: Path) -> list[str]:
    """The batch_floor command line for ``config`` (experiments.spark_floor_bench)."""
    bench, spark = config["experiments"]["spark_floor_bench"], config["spark"]
    rows = round(float(bench["rate_eps"]) * int(spark["trigger_ms"]) / 1000)
    return [str(engine_python("spark")), "-m", "engines.spark.batch_floor", "--out",
            str(out_csv), "--variants", *bench["variants"],
            "--repetitions", str(bench["repetitions"]), "--rows-per-batch", str(rows),
            "--trigger-ms", str(spark["trigger_ms"]), "--master", str(spark["master"]),
            "--shuffle-partitions", str(spark["shuffle_partitions"]),
            "--warmup-s", str(bench["warmup_s"]), "--measure-s", str(bench["measure_s"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    # Built aside and moved in whole: an interrupted benchmark leaves no output behind.
    with atomic_run_dir(args.out) as partial:
        cmd = floor_command(config, partial / "floor.csv")
        print(" ".join(cmd), flush=True)
        with (partial / "log.txt").open("w") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=REPO_ROOT).returncode
        print((partial / "log.txt").read_text()[-4000:])
        if code != 0:
            raise SystemExit(code)  # kept aside as <out>.failed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
