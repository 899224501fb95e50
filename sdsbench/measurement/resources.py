"""CPU and memory of the system under test, sampled from outside once per second.

``ResourceSampler(csv_path, pids_fn)`` runs a thread that, every ``interval_s``, asks
``pids_fn()`` for the current SUT processes, adds their children (recursively: Spark
and Flink fork JVMs and Python workers) and appends to ``csv_path``:

    time_ms, scope, pid, name, cpu_percent, rss_mb

- ``scope=process``: one row per live SUT process; ``cpu_percent`` is psutil's, i.e. per
  core (200 = two cores busy) over the last interval;
- ``scope=sut``: the sum over those processes (pid -1);
- ``scope=service`` (only with ``service_pids``, e.g. ``Services.pids``): one row per
  shared service, summed over its process tree (the PostgreSQL postmaster and its
  backends, the broker JVM), name = the service's label. For A1 and A2 most of the
  work happens inside PostgreSQL, which the SUT rows alone would not show. Its rss_mb
  sums the processes' RSS, so shared memory (PostgreSQL's shared buffers) counts once
  per process that touched it: an upper bound;
- ``scope=machine``: whole-machine CPU in percent of ALL cores (100 = all busy) and
  used memory; it includes everything else running on the machine.

A process is first seen at one tick and reported from the next: psutil's CPU percent
needs two readings, and reporting 0.0 for the first would understate the load. A
process that lives less than one interval (a short-lived backend) is not seen at all.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import psutil

log = logging.getLogger("sdsbench.resources")

RESOURCE_COLUMNS = ("time_ms", "scope", "pid", "name", "cpu_percent", "rss_mb")


class ResourceSampler:
    def __init__(
        self,
        csv_path: str | Path,
        pids_fn: Callable[[], Iterable[int]],
        interval_s: float = 1.0,
        service_pids: Mapping[str, int | None] | Callable[[], Mapping[str, int | None]]
        | None = None,
    ) -> None:
        self._path = Path(csv_path)
        self._pids_fn = pids_fn
        self._interval_s = interval_s
        # Kept by reference (or a function) and read at each sample: a broker restart
        # (fault runs) puts the new broker's pid into the same mapping.
        self._service_pids = service_pids if service_pids is not None else {}
        self._procs: dict[int, psutil.Process] = {}  # primed processes, by pid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        psutil.cpu_percent(interval=None)  # prime the machine-wide counter
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (safe to call when never started or already stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _tree(self, roots: Iterable[int]) -> dict[int, psutil.Process]:
        """The given processes and their descendants now alive, by pid."""
        found: dict[int, psutil.Process] = {}
        for pid in roots:
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                found[pid] = root
                for child in root.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.Error:
                continue
        return found

    def _measure(self, tree: dict[int, psutil.Process]) -> dict[int, tuple[str, float, float]]:
        """``pid -> (name, cpu_percent, rss_mb)`` of the primed processes; primes new ones.
        Each process is read once per tick (a second read would see a ~0 s interval)."""
        out = {}
        for pid, proc in tree.items():
            known = self._procs.get(pid)
            try:
                if known is None or known.create_time() != proc.create_time():
                    # New (or a recycled pid): prime now, report from the next tick.
                    proc.cpu_percent(interval=None)
                    self._procs[pid] = proc
                    continue
                with known.oneshot():
                    out[pid] = (known.name(), known.cpu_percent(interval=None),
                                known.memory_info().rss / 2**20)
            except psutil.Error:
                continue
        return out

    def sample_rows(self) -> list[tuple]:
        now_ms = time.time_ns() // 1_000_000
        rows: list[tuple] = []
        sut_tree = self._tree(list(self._pids_fn()))
        current = self._service_pids() if callable(self._service_pids) else self._service_pids
        services = {label: pid for label, pid in dict(current).items() if pid}
        service_trees = {label: self._tree([pid]) for label, pid in services.items()}
        alive = dict(sut_tree)
        for tree in service_trees.values():
            alive.update(tree)
        measured = self._measure(alive)

        def total(pids: Iterable[int]) -> tuple[str, str]:
            got = [measured[p] for p in pids if p in measured]
            return f"{sum(m[1] for m in got):.1f}", f"{sum(m[2] for m in got):.1f}"

        for pid in sut_tree:
            if pid in measured:
                name, cpu, rss_mb = measured[pid]
                rows.append((now_ms, "process", pid, name, f"{cpu:.1f}", f"{rss_mb:.1f}"))
        rows.append((now_ms, "sut", -1, "", *total(sut_tree)))
        for label, tree in service_trees.items():
            rows.append((now_ms, "service", services[label], label, *total(tree)))
        for gone in set(self._procs) - set(alive):
            del self._procs[gone]
        machine_cpu = psutil.cpu_percent(interval=None)
        memory = psutil.virtual_memory()
        used_mb = (memory.total - memory.available) / 2**20
        rows.append((now_ms, "machine", -1, "", f"{machine_cpu:.1f}", f"{used_mb:.1f}"))
        return rows

    def _run(self) -> None:
        with self._path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(RESOURCE_COLUMNS)
            next_t = time.monotonic()
            while not self._stop.is_set():
                try:
                    writer.writerows(self.sample_rows())
                    fh.flush()
                    self.samples += 1
                except Exception as exc:  # noqa: BLE001 - a lost sample must not end the run
                    log.warning("resource sample failed: %s", exc)
                next_t += self._interval_s
                self._stop.wait(max(0.0, next_t - time.monotonic()))
