"""The engines' pass-through ceiling (issue 14): what each engine can read, and read and
parse, of the input topic on this machine, so that its t_h can be given as a fraction of it.

One topic is filled once by the generator (the same events for every engine). Then, per
repetition, each engine's pass-through job (``engines/<engine>/passthrough.py``) runs over
all of it, the engines in turn and their order alternating between repetitions, so that a
drift of the machine's load hits them alike. A job runs the passes raw, parse, raw, parse
in one JVM: the first pass of each mode warms it up, the second is the one measured.

Outputs in ``out_dir``: ``passes.csv`` (every pass), ``summary.json`` (per engine and mode,
the measured rate over the repetitions: median, min, max, n; the events in the topic) and
the generator's files of the fill in ``fill/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engines.common.jvm_driver import engine_jars, engine_python
from engines.common.passthrough_job import MODES
from engines.flink.pipeline import Pipeline as FlinkPipeline
from engines.flink.pipeline import jvm_args
from engines.spark.pipeline import Pipeline as SparkPipeline
from sdsbench.experiments import make_spec
from sdsbench.paths import REPO_ROOT
from sdsbench.rundir import write_csv_atomic, write_json_atomic
from sdsbench.services.kafka import create_topic, delete_topics
from sdsbench.services.stack import ensure_services
from sdsbench.workload.launcher import launch_generators

PASSES = (*MODES, *MODES)  # a warm-up pass of each mode, then the measured one
PASS_COLUMNS = ("engine", "repetition", "pass", "mode", "measured", "records", "counted",
                "seconds", "eps", "wall_s")
JOB_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class CeilingSettings:
    events: int
    fill_rate_eps: float
    repetitions: int
    engines: tuple[str, ...]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CeilingSettings:
        bench = config["experiments"]["ceiling_bench"]
        return cls(int(bench["events"]), float(bench["fill_rate_eps"]),
                   int(bench["repetitions"]), tuple(bench["engines"]))


def _sink(bootstrap: str, topic: str) -> dict[str, Any]:
    return {"kind": "kafka", "bootstrap": bootstrap, "topic": topic, "watermark_markers": False,
            "marker_interval_ms": 0, "watermark_bound_ms": 0, "idle_partitions": []}


def fill_topic(config: dict[str, Any], bootstrap: str, topic: str,
               settings: CeilingSettings, out_dir: Path) -> int:
    """Create ``topic`` and send ``settings.events`` generated events into it; the number
    sent."""
    create_topic(bootstrap, topic, partitions=int(config["services"]["kafka"]["partitions"]))
    spec = make_spec(config, "spark", "constant", settings.fill_rate_eps,
                     run_id="ceiling-fill",
                     duration_s=settings.events / settings.fill_rate_eps)
    launch_generators(spec, config, _sink(bootstrap, topic), out_dir).wait()
    return int(json.loads((out_dir / "summary.json").read_text())["events_sent"])


def job_command(engine: str, config: dict[str, Any], bootstrap: str, topic: str,
                out: Path) -> tuple[list[str], dict[str, str]]:
    """The pass-through job's command line and environment, with the CTR job's engine
    settings (Spark master and driver memory; Flink parallelism and heap)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    common = ["-m", f"engines.{engine}.passthrough", "--bootstrap", bootstrap, "--topic",
              topic, "--out", str(out), "--passes", ",".join(PASSES)]
    if engine == "spark":
        spark = config["spark"]
        jars = engine_jars("spark", SparkPipeline.connector)
        return ([str(engine_python("spark")), *common, "--master", spark["master"],
                 "--driver-memory", spark["driver_memory"], "--jars", ",".join(jars)], env)
    if engine == "flink":
        flink = config["flink"]
        env["JVM_ARGS"] = jvm_args(int(flink["heap_mb"]))
        jars = engine_jars("flink", FlinkPipeline.connector)
        return ([str(engine_python("flink")), *common, "--parallelism",
                 str(flink["parallelism"]), "--jars", ",".join(jars)], env)
    raise ValueError(f"no pass-through job for engine {engine!r}")


def run_job(engine: str, config: dict[str, Any], bootstrap: str, topic: str,
            out_dir: Path, repetition: int) -> list[dict[str, Any]]:
    """One job of ``engine`` over the topic: its passes as ``PASS_COLUMNS`` rows."""
    out = out_dir / "jobs" / f"{engine}-rep{repetition}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd, env = job_command(engine, config, bootstrap, topic, out)
    with (out_dir / "jobs" / f"{engine}-rep{repetition}.log").open("w") as log:
        subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                       check=True, timeout=JOB_TIMEOUT_S)
    passes = json.loads(out.read_text())["passes"]
    last = {mode: max(i for i, p in enumerate(passes) if p["mode"] == mode)
            for mode in {p["mode"] for p in passes}}
    return [{"engine": engine, "repetition": repetition, "pass": i + 1, "mode": p["mode"],
             "measured": last[p["mode"]] == i, **{k: p.get(k) for k in PASS_COLUMNS[5:]}}
            for i, p in enumerate(passes)]


def summarize(rows: pd.DataFrame, events: int) -> dict[str, Any]:
    """Per engine and mode, the measured passes' rate over the repetitions; and whether
    every pass counted every event (``exact``)."""
    out: dict[str, Any] = {"events": events, "engines": {}}
    for (engine, mode), part in rows[rows["measured"]].groupby(["engine", "mode"]):
        eps = part["eps"].astype(float)
        out["engines"].setdefault(engine, {})[mode] = {
            "eps_median": float(eps.median()), "eps_min": float(eps.min()),
            "eps_max": float(eps.max()), "n": int(eps.notna().sum()),
            "values": [float(v) for v in eps]}
    out["exact"] = bool((rows["counted"] == events).all())
    return out


def run_ceiling(config: dict[str, Any], out_dir: Path, services_dir: Path,
                progress: Any = print) -> dict[str, Any]:
    """The whole benchmark (module docstring); returns ``summary.json``'s content."""
    settings = CeilingSettings.from_config(config)
    services = ensure_services(config["services"], services_dir)
    bootstrap = services.kafka_bootstrap
    topic = f"ceiling-{uuid.uuid4().hex[:12]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        started = time.time()
        events = fill_topic(config, bootstrap, topic, settings, out_dir / "fill")
        progress(f"[ceiling] {events:,} events in {topic} ({time.time() - started:.0f} s)")
        for rep in range(1, settings.repetitions + 1):
            order = settings.engines if rep % 2 else tuple(reversed(settings.engines))
            for engine in order:
                started = time.time()
                rows += run_job(engine, config, bootstrap, topic, out_dir, rep)
                rate = rows[-1]["eps"]
                progress(f"[ceiling] rep {rep}/{settings.repetitions} {engine}: parse "
                         f"{rate if rate is None else f'{rate:,.0f}'} ev/s "
                         f"({time.time() - started:.0f} s)")
    finally:
        delete_topics(bootstrap, [topic])
    table = pd.DataFrame(rows, columns=list(PASS_COLUMNS))
    write_csv_atomic(out_dir / "passes.csv", PASS_COLUMNS, rows)
    summary = summarize(table, events)
    summary |= {"repetitions": settings.repetitions, "fill_rate_eps": settings.fill_rate_eps,
                "passes": list(PASSES)}
    write_json_atomic(out_dir / "summary.json", summary)
    return summary

