"""Provenance of one run: what ran, where, with which versions and settings, and when.

``collect_provenance`` is called by ``sdsbench.runner.execute_run`` at the end of a run
and written to ``provenance.json``. Everything is read off the machine at that moment
(never typed in): a value that cannot be read is recorded as null with the reason.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from sdsbench.paths import REPO_ROOT

# Python packages whose versions matter to the measurements, per virtualenv.
MAIN_PACKAGES = ("numpy", "pandas", "confluent-kafka", "kafka-python", "psycopg", "psutil",
                 "snakemake", "matplotlib")
# Spark: .venv/spark runs micro-batches, .venv/spark_rt real-time mode (spark.execution);
# the run's spark/ready.json says which Spark version ran.
ENGINE_VENVS = {"spark": (("spark", ("pyspark", "pyarrow")), ("spark_rt", ("pyspark", "pyarrow"))),
                "flink": (("flink", ("apache-flink", "pyarrow")),)}


def _run(cmd: list[str], timeout_s: float = 10.0) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout + proc.stderr).strip() or None


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def venv_package_versions(venv: str, packages: tuple[str, ...]) -> dict[str, str | None]:
    """Versions of packages installed in ``.venv/<venv>``, read from their dist-info
    directories (no interpreter start)."""
    out: dict[str, str | None] = {}
    site = list((REPO_ROOT / ".venv" / venv / "lib").glob("python*/site-packages"))
    for package in packages:
        version = None
        name = "[-_]".join(re.escape(part) for part in package.split("-"))
        pattern = re.compile(rf"^{name}-([^-]+)\.dist-info$", re.IGNORECASE)
        for directory in site:
            for entry in directory.iterdir():
                match = pattern.match(entry.name)
                if match:
                    version = match.group(1)
        out[package] = version
    return out


def java_version() -> str | None:
    text = _run(["java", "-version"])
    return text.splitlines()[0] if text else None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_bytes = psutil.virtual_memory().total
    except ImportError:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(memory_bytes / 2**30, 2),
        "kernel": platform.release(),
        "os": platform.platform(),
        # Load average (1, 5, 15 min) when the run ended: other work on the machine
        # during the run shows here (the run itself adds about one to two).
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def git_info() -> dict[str, Any]:
    commit = _run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"])
    status = _run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit, "dirty": bool(status)}


def software_versions(pipeline: str, services: Any) -> dict[str, Any]:
    versions: dict[str, Any] = {
        "python": sys.version.split()[0],
        "packages": {name: _package_version(name) for name in MAIN_PACKAGES},
        "java": java_version(),
    }
    for venv, packages in ENGINE_VENVS.get(pipeline, ()):
        versions[f"{venv}_venv"] = venv_package_versions(venv, packages)
    service_versions = getattr(services, "versions", None) or {}
    versions["services"] = dict(service_versions)
    return versions


def cluster_info(services: Any) -> dict[str, Any]:
    """What the stack ran besides one broker: the Kafka nodes and their replication, the
    standalone Flink and Spark clusters (endpoints and processes)."""
    cfg = getattr(services, "config", None) or {}
    pids = dict(getattr(services, "pids", None) or {})

    def processes(prefix: str) -> list[str]:
        return sorted(label for label in pids if label.startswith(f"{prefix}-"))

    kafka = cfg.get("kafka") or {}
    out: dict[str, Any] = {"kafka_cluster": {
        "nodes": int(kafka.get("nodes", 1)),
        "min_insync_replicas": int(kafka.get("min_insync_replicas", 1)),
        "processes": processes("kafka") or ["kafka"]}}
    if getattr(services, "flink_rest", None):
        out["flink_cluster"] = {"rest": services.flink_rest, **(cfg.get("flink") or {}),
                                "processes": processes("flink")}
    if getattr(services, "spark_master", None):
        out["spark_cluster"] = {"master": services.spark_master, **(cfg.get("spark") or {}),
                                "processes": processes("spark")}
    return out


def collect_provenance(
    config: dict[str, Any],
    spec: dict[str, Any],
    services: Any,
    started_s: float,
    ended_s: float,
) -> dict[str, Any]:
    """Everything needed to say what this run was (module docstring)."""
    from sdsbench.experiments import pipeline_params

    def iso(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

    return {
        "run_id": spec["run_id"],
        "profile": config.get("profile"),
        "seed": spec.get("seed"),
        "spec": spec,
        "params": pipeline_params(config, spec),
        "config": config,
        "started_s": started_s,
        "ended_s": ended_s,
        "started": iso(started_s),
        "ended": iso(ended_s),
        "wall_s": round(ended_s - started_s, 3),
        "machine": machine_info(),
        "software": software_versions(spec["pipeline"], services),
        "services": {
            "broker_kind": getattr(services, "broker_kind", None),
            "external": dict(getattr(services, "external", {}) or {}),
            "kafka_bootstrap": getattr(services, "kafka_bootstrap", None),
            **cluster_info(services),
        },
        "git": git_info(),
    }
