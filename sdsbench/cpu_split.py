"""The machine's CPUs split between the load and the system under test (``run.load_cpus``).

The generator and the Kafka broker (the load) run on ``load_cpus``; the SUT's processes and
PostgreSQL (for A1-A3 the engine itself) on the other CPUs, so every pipeline gets the same
remainder whatever the generator and the broker cost. Pinning is CPU affinity
(sched_setaffinity) of every thread of a process and of its descendants; threads and
processes started later inherit it from the thread that starts them. Services outlive a
run: the runner gives them all CPUs back at its end.

A1's generator is part of its one program (the SUT): it runs on the SUT's CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil

from sdsbench.config import ConfigError


@dataclass(frozen=True)
class CpuSplit:
    load: frozenset[int]
    sut: frozenset[int]

    def describe(self) -> dict[str, Any]:
        """For provenance: which CPUs each side had."""
        return {"load_cpus": sorted(self.load), "sut_cpus": sorted(self.sut),
                "load": "generator, Kafka broker", "sut": "pipeline processes, PostgreSQL"}


def cpu_split(config: dict[str, Any]) -> CpuSplit | None:
    """The run's split, or None when ``run.load_cpus`` is null; a split that names a CPU
    this process may not use, or leaves the SUT none, is a ConfigError naming the key."""
    load = config["run"].get("load_cpus")
    if not load:
        return None
    usable = os.sched_getaffinity(0)
    unknown = set(load) - usable
    if unknown:
        raise ConfigError(f"config key run.load_cpus: CPUs {sorted(unknown)} are not usable "
                          f"here (usable: {sorted(usable)})")
    sut = usable - set(load)
    if not sut:
        raise ConfigError("config key run.load_cpus: leaves no CPU for the system under test "
                          f"(usable: {sorted(usable)})")
    return CpuSplit(frozenset(load), frozenset(sut))


def pin_tree(pid: int | None, cpus: frozenset[int] | set[int]) -> int:
    """Pin every thread of ``pid`` and of its descendants to ``cpus``; the number of
    threads pinned (0 for a process that is gone)."""
    if pid is None:
        return 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    pinned = 0
    for proc in processes:
        try:
            tids = os.listdir(f"/proc/{proc.pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cpus)
                pinned += 1
            except (ProcessLookupError, PermissionError):
                pass  # a thread that ended in between, or not ours to move
    return pinned


def allowed_cpus(pid: int) -> set[int]:
    """The CPUs ``pid`` may run on."""
    return set(os.sched_getaffinity(pid))
