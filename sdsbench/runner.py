"""One run of one pipeline: the lifecycle every engine shares.

    ensure services -> pipeline.prepare (per-run topics/tables) -> pipeline.start (SUT)
    -> generator(s), open loop, for duration_s -> pipeline.drain -> pipeline.collect
    -> pipeline.stop -> provenance -> atomic rename of the run directory

A run spec with ``fault`` (sdsbench.faults) also gets a fault injector, started with the
generator: it kills and restarts the SUT (``kill``/``restart``, optional driver methods)
or restarts the broker at ``fault.at_s``; the run drains only after the fault is over.

Engines never time themselves: the runner samples resources from outside and the
generator records what it really sent. A pipeline is a class ``Pipeline`` in
``engines/<name>/pipeline.py`` implementing the ``PipelineDriver`` protocol.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sdsbench.cpu_split import CpuSplit, cpu_split, pin_tree
from sdsbench.process_control import pid_alive
from sdsbench.rundir import atomic_run_dir, write_json_atomic

log = logging.getLogger("sdsbench.runner")

PIPELINES = ("a1", "a2", "a3", "spark", "flink")


@dataclass
class RunContext:
    """Everything a pipeline needs for one run."""

    run_id: str
    spec: dict[str, Any]  # the run's own settings (see sdsbench.experiments)
    config: dict[str, Any]  # the whole validated experiment config
    services: Any  # sdsbench.services.stack.Services
    run_dir: Path  # scratch directory; renamed to the final path on success
    processes: list[subprocess.Popen] = field(default_factory=list)  # SUT processes, sampled
    extra: dict[str, Any] = field(default_factory=dict)  # pipeline-private state
    # Processes of the stack's standalone engine cluster that run this run's job: part of
    # the SUT (sampled as such, not as a service). Set by the engine's driver.
    cluster_pids: list[int] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None] + [
            pid for pid in self.cluster_pids if pid_alive(pid)]

    def claim_cluster(self, prefix: str) -> list[int]:
        """Take the stack's processes labelled ``<prefix>-*`` (e.g. the Flink cluster's
        JobManager and TaskManagers) as this run's SUT; returns their pids."""
        pids = dict(getattr(self.services, "pids", None) or {})
        self.cluster_pids = [pid for label, pid in pids.items()
                             if label.startswith(f"{prefix}-") and pid]
        return self.cluster_pids


class PipelineDriver(Protocol):
    #: True when the pipeline generates its own load in-process (A1's tight coupling).
    owns_generator: bool

    def prepare(self, ctx: RunContext) -> None: ...

    def start(self, ctx: RunContext) -> None: ...

    def generator_sink(self, ctx: RunContext) -> dict[str, Any]: ...

    def drain(self, ctx: RunContext, timeout_s: float) -> None: ...

    def collect(self, ctx: RunContext) -> None: ...

    def stop(self, ctx: RunContext) -> None: ...

    # Optional, for fault runs (sdsbench.faults): SIGKILL the processes holding the
    # pipeline's state and return what was killed; start them again from what they
    # committed and return once the SUT runs again.
    # def kill(self, ctx: RunContext) -> dict[str, Any]: ...
    # def restart(self, ctx: RunContext) -> dict[str, Any]: ...


# How long the runner waits, after the generator, for a kill + restart in progress.
FAULT_FINISH_TIMEOUT_S = 600.0


def _fault_injector(pipeline: PipelineDriver, ctx: RunContext) -> Any:
    """The run's fault injector, or None for a run without ``fault``."""
    fault = ctx.spec.get("fault")
    if not fault:
        return None
    from sdsbench.faults import FaultInjector

    if pipeline.owns_generator:
        raise ValueError(f"fault runs need a decoupled generator; {ctx.spec['pipeline']} "
                         "owns its generator")
    if fault["kind"] == "kill_sut" and not (
        hasattr(pipeline, "kill") and hasattr(pipeline, "restart")
    ):
        raise ValueError(f"pipeline {ctx.spec['pipeline']} cannot be killed and restarted")
    return FaultInjector(fault, pipeline, ctx, float(ctx.spec["duration_s"]))


def _pin_sut_side(split: CpuSplit, services: Any, ctx: RunContext) -> dict[str, int]:
    """Pin the broker to the load's CPUs and PostgreSQL and the SUT's processes to the
    others (``sdsbench.cpu_split``); threads pinned per side."""
    pids = dict(getattr(services, "pids", None) or {})
    kafka = [pid for label, pid in pids.items() if label.split("-")[0] == "kafka"]
    return {"kafka": sum(pin_tree(pid, split.load) for pid in kafka),
            "postgres": pin_tree(pids.get("postgres"), split.sut),
            "sut": sum(pin_tree(pid, split.sut) for pid in ctx.pids)}


def _unpin(services: Any, ctx: RunContext) -> None:
    every = os.sched_getaffinity(0)
    for pid in [*(getattr(services, "pids", None) or {}).values(), *ctx.pids]:
        pin_tree(pid, every)


def load_pipeline(name: str) -> PipelineDriver:
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {PIPELINES}")
    module = importlib.import_module(f"engines.{name}.pipeline")
    return module.Pipeline()


def execute_run(config: dict[str, Any], spec: dict[str, Any], out_dir: str | Path,
                services_dir: str | Path) -> Path:
    """Run ``spec`` and leave its complete results in ``out_dir`` (or nothing there). The
    services (started, or reused when running) keep their state in ``services_dir``
    (``sdsbench.paths.services_state_dir()`` by default in the scripts)."""
    from sdsbench.measurement.resources import ResourceSampler
    from sdsbench.provenance import collect_provenance
    from sdsbench.services.stack import ensure_services
    from sdsbench.workload.launcher import launch_generators

    # Absolute: the SUT and generator processes run in the repository, not in the
    # caller's working directory (snakemake -d <elsewhere>).
    out_dir = Path(out_dir).resolve()
    pipeline = load_pipeline(spec["pipeline"])
    split = cpu_split(config)  # a bad split fails before anything starts
    with atomic_run_dir(out_dir) as run_dir:
        services = ensure_services(config["services"], Path(services_dir))
        ctx = RunContext(spec["run_id"], spec, config, services, run_dir)
        started = time.time()
        # PostgreSQL and the broker are sampled too: for A1/A2 most CPU is spent there.
        sampler = ResourceSampler(
            run_dir / "metrics" / "resources.csv",
            lambda: ctx.pids,
            # a standalone cluster's processes count as the SUT (ctx.cluster_pids) instead
            service_pids=lambda: {label: pid for label, pid in
                                  (getattr(services, "pids", None) or {}).items()
                                  if pid not in ctx.cluster_pids},
        )
        injector = _fault_injector(pipeline, ctx)  # a bad fault fails before anything starts
        pinned: dict[str, int] = {}
        try:
            pipeline.prepare(ctx)
            pipeline.start(ctx)
            if split is not None:
                pinned |= _pin_sut_side(split, services, ctx)
            sampler.start()
            if not pipeline.owns_generator:
                sink = pipeline.generator_sink(ctx)
                if injector is not None:
                    injector.start()
                generators = launch_generators(spec, config, sink, run_dir / "generator")
                if split is not None:
                    pinned["generator"] = sum(pin_tree(p.pid, split.load)
                                              for p in generators.processes)
                # Generators are not the SUT: kept out of ctx.processes so the "sut"
                # CPU rows are the pipeline's alone (the generator reports its own
                # loop CPU in generator/summary.json).
                generators.wait()
            if injector is not None:
                # A restart (Spark, Flink) may outlast the generator: drain after it.
                injector.finish(FAULT_FINISH_TIMEOUT_S)
            pipeline.drain(ctx, float(config["run"]["drain_timeout_s"]))
            pipeline.collect(ctx)
        finally:
            if injector is not None:
                injector.cancel()  # a run that failed early: no kill during the teardown
            sampler.stop()
            if split is not None:  # services and engine sessions outlive the run
                _unpin(services, ctx)
            pipeline.stop(ctx)
        provenance = collect_provenance(config, spec, services, started, time.time())
        provenance["cpu_split"] = (None if split is None
                                   else split.describe() | {"threads_pinned": pinned})
        write_json_atomic(run_dir / "provenance.json", provenance)
    return out_dir
