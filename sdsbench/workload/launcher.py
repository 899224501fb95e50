"""The parent side of the generator: start the producer processes of a run
(``python -m sdsbench.workload.generator``, one per ``workload.producer_processes``), give
them a common schedule start once every one is ready, wait for them and merge their files
(``parts/p<i>/``) into the run's ``generator/`` directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdsbench.paths import REPO_ROOT
from sdsbench.rundir import write_json_atomic
from sdsbench.workload.generator import (
    _NS_PER_MS,
    _NS_PER_S,
    FLUSH_TIMEOUT_S,
    READY_TIMEOUT_S,
    START_AFTER_READY_S,
    RunSpec,
    part_dir,
    validate_spec,
)
from sdsbench.workload.malformed import NO_MALFORMED, merge_malformed_files
from sdsbench.workload.sinks import check_kafka_topic, validate_sink
from sdsbench.workload.truth import merge_rate_files, merge_truth_files


class GeneratorError(RuntimeError):
    """A producer process failed, was interrupted or timed out."""


@dataclass
class GeneratorGroup:
    """The running producer processes of one run."""

    processes: list[subprocess.Popen]
    out_dir: Path
    start_ns: int
    run: RunSpec
    timeout_s: float

    def stop(self) -> None:
        """Ask every producer to stop (they flush, write, and exit non-zero)."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes:
            proc.wait()

    def wait(self) -> dict[str, Any]:
        """Block until every producer finished; merge their files into out_dir and
        return the merged summary. Raises GeneratorError if any producer failed (then
        no merged file is written)."""
        deadline = time.monotonic() + self.timeout_s
        try:
            for proc in self.processes:
                remaining = deadline - time.monotonic()
                try:
                    proc.wait(timeout=max(0.1, remaining))
                except subprocess.TimeoutExpired:
                    self.stop()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        pass
                    raise GeneratorError(
                        f"producer pid {proc.pid} still running after {self.timeout_s:.0f} s"
                    ) from None
        except BaseException:
            self.kill()
            raise
        failed = [(i, p.returncode) for i, p in enumerate(self.processes) if p.returncode != 0]
        if failed:
            raise GeneratorError(
                "producer processes failed (index, exit code): "
                f"{failed}; see {self.out_dir / 'parts'}"
            )
        return merge_outputs(self.out_dir, len(self.processes))


def merge_outputs(out_dir: str | Path, processes: int) -> dict[str, Any]:
    """Merge the per-process files of ``out_dir/parts`` into ``out_dir``."""
    out_dir = Path(out_dir)
    parts = [part_dir(out_dir, i) for i in range(processes)]
    summaries = [json.loads((p / "summary.json").read_text()) for p in parts]
    truth_total = merge_truth_files([p / "truth.csv" for p in parts], out_dir / "truth.csv")
    merge_rate_files([p / "rate.csv" for p in parts], out_dir / "rate.csv")
    malformed = merge_malformed_files(
        [p / "malformed.csv" for p in parts], out_dir / "malformed.csv"
    )
    malformed_total = sum(malformed.values())
    if (parts[0] / "mmpp_states.csv").exists():
        # Every process used the same state path; keep one copy.
        tmp = out_dir / "mmpp_states.csv.tmp"
        shutil.copyfile(parts[0] / "mmpp_states.csv", tmp)
        os.replace(tmp, out_dir / "mmpp_states.csv")
    sent = sum(s["events_sent"] for s in summaries)
    if sent != truth_total + malformed_total:
        raise GeneratorError(
            f"merged truth holds {truth_total} events and {malformed_total} malformed records "
            f"but {sent} were sent"
        )
    first = min((s["first_send_ns"] for s in summaries if s["first_send_ns"]), default=None)
    last = max((s["last_send_ns"] for s in summaries if s["last_send_ns"]), default=None)
    duration_s = summaries[0]["scheduled_duration_s"]
    arrival = dict(summaries[0]["arrival"])
    for key in ("rate_eps", "mean_rate_eps", "low_rate_eps", "high_rate_eps"):
        arrival[key] = sum(s["arrival"][key] for s in summaries)
    report_bytes = sum(int(s["sink_report"].get("bytes", 0)) for s in summaries)
    merged = {
        "status": "ok",
        "processes": processes,
        "start_ns": summaries[0]["start_ns"],
        "start_epoch_ms": summaries[0]["start_ns"] // _NS_PER_MS,
        "schedule_end_ns": summaries[0]["schedule_end_ns"],
        "scheduled_duration_s": duration_s,
        "batch_ms": summaries[0]["batch_ms"],
        "arrival": arrival,
        "events_scheduled": sum(s["events_scheduled"] for s in summaries),
        # Sent = valid + malformed records (both are load); truth holds the valid ones.
        "events_sent": sent,
        "events_in_truth": truth_total,
        "events_malformed": malformed_total,
        "malformed_by_kind": malformed,
        "malformed": summaries[0].get("malformed", NO_MALFORMED.describe()),
        "achieved_rate_eps": sent / duration_s,
        "send_span_s": (last - first) / _NS_PER_S if first and last else 0.0,
        "behind_ms_max": max(s["behind_ms_max"] for s in summaries),
        "blocked_ms_total": sum(s["blocked_ms_total"] for s in summaries),
        "cpu_s_loop": sum(s.get("cpu_s_loop", 0.0) for s in summaries),
        "markers_sent": sum(s["markers_sent"] for s in summaries),
        "bytes_sent": report_bytes,
        "mean_event_bytes": report_bytes / sent if sent and report_bytes else None,
        "sink": summaries[0]["sink"],
        "producer_settings": summaries[0]["sink_report"].get("producer"),
        "seeds": [s["seed"] for s in summaries],
        "per_process": summaries,
    }
    write_json_atomic(out_dir / "summary.json", merged)
    return merged


def _wait_ready(processes: list[subprocess.Popen], timeout_s: float) -> None:
    """Wait until every producer printed 'ready'; raise GeneratorError if one exits or
    the timeout passes."""
    import selectors

    selector = selectors.DefaultSelector()
    for i, proc in enumerate(processes):
        assert proc.stdout is not None
        selector.register(proc.stdout, selectors.EVENT_READ, i)
    waiting = set(range(len(processes)))
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GeneratorError(
                    f"producer processes {sorted(waiting)} not ready after {timeout_s:.0f} s"
                )
            for key, _ in selector.select(timeout=remaining):
                i = key.data
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line.strip() == "ready":
                    waiting.discard(i)
                    selector.unregister(key.fileobj)
                else:
                    code = processes[i].wait()
                    raise GeneratorError(
                        f"producer process {i} exited with code {code} before it was ready "
                        f"(its error is on stderr above)"
                    )
    finally:
        selector.close()


def launch_generators(
    spec: Mapping[str, Any],
    config: Mapping[str, Any],
    sink: Mapping[str, Any],
    out_dir: str | Path,
    *,
    quiet: bool = False,
) -> GeneratorGroup:
    """Start ``config.workload.producer_processes`` open-loop producer processes.

    Everything is validated first (ConfigError names the bad key). Returns once every
    process is ready (imports done, producer connected); they share a schedule start
    START_AFTER_READY_S later. Call ``wait()`` on the result."""
    run = validate_spec(spec, config)
    sink = validate_sink(sink)
    if sink["kind"] == "kafka":
        check_kafka_topic(sink)
    out_dir = Path(out_dir)
    inputs = out_dir / "parts" / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    write_json_atomic(inputs / "spec.json", spec)
    write_json_atomic(inputs / "config.json", config)
    write_json_atomic(inputs / "sink.json", sink)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    n = run.producer_processes
    processes: list[subprocess.Popen] = []
    try:
        for i in range(n):
            cmd = [
                sys.executable,
                "-m",
                "sdsbench.workload.generator",
                "--spec",
                str(inputs / "spec.json"),
                "--config-json",
                str(inputs / "config.json"),
                "--sink",
                str(inputs / "sink.json"),
                "--out",
                str(out_dir),
                "--process-index",
                str(i),
                "--processes",
                str(n),
                "--handshake",
            ]
            if quiet:
                cmd.append("--quiet")
            processes.append(
                subprocess.Popen(
                    cmd,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        # A common start once every producer is set up (imports, broker connection):
        # a fixed lead would start slow children late, which would be measured as
        # lateness of the generator rather than of the system under test.
        _wait_ready(processes, READY_TIMEOUT_S)
        start_ns = time.time_ns() + int(START_AFTER_READY_S * _NS_PER_S)
        start_ns = -(-start_ns // (10 * _NS_PER_MS)) * 10 * _NS_PER_MS  # on a 10 ms grid
        for proc in processes:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{start_ns}\n")
            proc.stdin.close()
            proc.stdout.close()
    except BaseException:
        for proc in processes:
            proc.kill()
            proc.wait()
        raise
    timeout_s = START_AFTER_READY_S + run.duration_s + FLUSH_TIMEOUT_S + 60.0
    return GeneratorGroup(processes, out_dir, start_ns, run, timeout_s)

