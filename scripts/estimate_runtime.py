"""Estimate how long a profile's engine runs take: runs x (duration + start-up and drain).

    python scripts/estimate_runtime.py --config config/config.yaml --config config/full.yaml \
        [--measured data/quick/raw]

The start-up and drain overhead per pipeline is measured from completed runs (wall time in
their provenance.json minus their generator duration) when ``--measured`` points at a raw
directory; otherwise the values below, measured on the reference 2-core machine, are used.
A search repetition is one staircase run (steps x step_s) and at most
``search.confirm_trials`` steady trials (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.config import load_config  # noqa: E402
from sdsbench.experiments import expand_runs, searches  # noqa: E402

# Seconds of start-up + drain per run beyond the generator's duration: medians of the
# quick profile's runs of 2026-11-24 on the reference machine (with other work on it).
DEFAULT_OVERHEAD_S = {"a1": 6.0, "a2": 11.0, "a3": 3.0, "spark": 50.0, "flink": 64.0}


def measured_overheads(raw_dirs: list[Path]) -> dict[str, float]:
    samples: dict[str, list[float]] = defaultdict(list)
    for raw in raw_dirs:
        for prov_path in raw.glob("**/provenance.json"):
            prov = json.loads(prov_path.read_text())
            spec = prov.get("spec", {})
            if "wall_s" in prov and "duration_s" in spec:
                samples[spec["pipeline"]].append(float(prov["wall_s"]) - float(spec["duration_s"]))
    return {p: statistics.median(v) for p, v in samples.items() if v}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="config file (repeat)")
    parser.add_argument("--measured", action="append", default=[], help="raw run directory")
    args = parser.parse_args(argv)
    config = load_config(*args.config)
    overhead = DEFAULT_OVERHEAD_S | measured_overheads([Path(p) for p in args.measured])
    per_pipeline: dict[str, float] = defaultdict(float)
    runs = expand_runs(config)
    for spec in runs.values():
        per_pipeline[spec["pipeline"]] += spec["duration_s"] + overhead[spec["pipeline"]]
    trials = 0
    search = config["search"]
    reps = int(search["repetitions"])
    staircase_s = float(search["step_s"]) * int(search["steps"])
    for s in searches(config).values():
        n = int(search["confirm_trials"])
        trials += reps * (n + 1)
        per_pipeline[s["pipeline"]] += reps * (
            staircase_s + overhead[s["pipeline"]]
            + n * (float(search["trial_duration_s"]) + overhead[s["pipeline"]]))
    bench = config["experiments"]["generator_bench"]
    if bench["enabled"]:
        # Measured: ~9 trials per configuration (ramp x2 + bisection) of trial_s plus ~3 s
        # start each, and ~1 minute for the hot path, the clients and the broker.
        configs = len(bench["processes"]) * len(bench["compression"])
        per_pipeline["generator bench"] = configs * 9 * (float(bench["trial_s"]) + 3) + 60
        overhead["generator bench"] = 0.0
    total = sum(per_pipeline.values())
    print(f"profile {config['profile']}: {len(runs)} runs + at most {trials} search trials")
    for pipeline, seconds in sorted(per_pipeline.items()):
        print(f"  {pipeline:15s} {seconds / 60:7.1f} min  (+{overhead[pipeline]:.0f} s per run)")
    print(f"  {'total':15s} {total / 60:7.1f} min = {total / 3600:.1f} h (searches: upper bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
