"""The open-loop YSB generator: schedule, send, record exact truth.

Why one module (over 500 lines): the schedule, the send loop and the bookkeeping of one
producer process must agree to the event (truth.csv = what was sent); the parent side
that starts and merges the processes is ``sdsbench.workload.launcher``.

Open loop: the arrival process fixes, before the run, how many events each tick of
``workload.batch_ms`` holds; tick k is due at ``start + k * batch_ms`` and its events are
handed to the sink as one batch at (or, when behind, after) that time. The loop never
waits for a consumer. When it falls behind it keeps the schedule: the backlog is sent as
fast as possible with the original due times as event times, and the lateness
(hand-off - due, including time blocked by a full producer queue) is recorded per second
in rate.csv. Nothing is dropped, so there is no coordinated omission.

Timestamps: ``event_time_ns`` = the batch's due time (the scheduled send time) for
on-time events and ``due - delay`` for the disorder fraction; ``insertion_time_ms`` = wall
time when the batch (or, after back-pressure, its rest) is handed to the sink.

Processes: ``sdsbench.workload.launcher.launch_generators`` starts
``workload.producer_processes`` child processes (``python -m sdsbench.workload.generator
...``: this module's ``main``), each with rate/N, its own seed derived from
``spec["seed"]`` and its index, and a common start time. They share the MMPP state path
(so their sum is one MMPP) and the user/page pools. ``GeneratorGroup.wait()`` merges
their files into ``out_dir/truth.csv``, ``rate.csv``, ``malformed.csv``, ``summary.json``
(and ``mmpp_states.csv`` for MMPP); per-process files stay in ``out_dir/parts/``.

Malformed input (``sdsbench.workload.malformed``): in a run with ``malformed.fraction > 0``
a seeded share of the scheduled events is replaced by bad records, sent after the tick's
valid events. They count as sent (rate.csv, ``events_sent``) and are counted per kind (and
event-time window) in malformed.csv, never in truth.csv: ``events_sent = events_in_truth +
events_malformed``.

Sink dict (``launch_generators``'s ``sink``)::

    {"kind": "kafka", "bootstrap": str, "topic": str, "watermark_markers": bool,
     "marker_interval_ms": int, "watermark_bound_ms": int, "idle_partitions": [int]}
    {"kind": "null"}

Watermark markers: every marker_interval_ms each producer writes
``{"watermark_ns": W, "producer": i}`` into every partition, W = min(now, next due time)
- watermark_bound_ms: following the schedule rather than the wall clock, so a generator
that falls behind never claims progress it has not made. A bound below
``disorder.max_delay_ms`` makes the markers heuristic on purpose: delayed events beyond the
bound arrive behind a marker (late data). After its last event each producer writes a
final marker with W = the end of its schedule (no event of the run has event time >= it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from sdsbench.config import ConfigError
from sdsbench.rundir import write_json_atomic, write_text_atomic
from sdsbench.workload.arrivals import (
    ArrivalSpec,
    TickSchedule,
    state_path_for,
    tick_schedule,
    validate_arrival,
)
from sdsbench.workload.events import Batch, EventFactory
from sdsbench.workload.malformed import (
    NO_MALFORMED,
    MalformedRecorder,
    MalformedSpec,
    draw_bad_records,
    malformed_spec,
)
from sdsbench.workload.sinks import (
    DeliveryError,
    Sink,
    make_sink,
    producer_settings,
    validate_sink,
)
from sdsbench.workload.truth import (
    RateRecorder,
    TruthRecorder,
)

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
START_LEAD_S = 2.0  # default lead of a schedule start (in-process use)
READY_TIMEOUT_S = 120.0  # producer processes must be ready (imports, broker) within this
START_AFTER_READY_S = 0.3  # schedule start after the last producer reported ready
FLUSH_TIMEOUT_S = 120.0
EXIT_INTERRUPTED = 130
EXIT_DELIVERY_FAILED = 3

# Purposes of the derived random streams (SeedSequence spawn keys).
_STREAM_STATE_PATH, _STREAM_POOLS, _STREAM_COUNTS, _STREAM_EVENTS = 0, 1, 2, 3
_STREAM_MALFORMED = 4


@dataclass(frozen=True)
class RunSpec:
    """The parts of a run spec the generator uses, validated."""

    arrival: ArrivalSpec
    duration_s: float
    seed: int
    batch_ms: int
    producer_processes: int
    malformed: MalformedSpec = NO_MALFORMED


def validate_spec(spec: Mapping[str, Any], config: Mapping[str, Any]) -> RunSpec:
    """Check everything the generator needs before anything starts; a ConfigError
    (a ValueError) names the missing or bad key."""
    workload = config.get("workload") if isinstance(config, Mapping) else None
    if not isinstance(workload, Mapping):
        raise ConfigError("config key workload: missing")
    arrival = validate_arrival(spec, workload)
    for key in ("duration_s", "seed"):
        if key not in spec:
            raise ConfigError(f"spec key {key}: missing")
    duration = spec["duration_s"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
        raise ConfigError(f"spec key duration_s: must be a number > 0, got {duration!r}")
    seed = spec["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"spec key seed: must be an integer >= 0, got {seed!r}")
    for key in ("batch_ms", "producer_processes", "campaigns", "ads_per_campaign"):
        if key not in workload:
            raise ConfigError(f"config key workload.{key}: missing")
    batch_ms = workload["batch_ms"]
    if isinstance(batch_ms, bool) or not isinstance(batch_ms, int) or not 1 <= batch_ms <= 1000:
        raise ConfigError("config key workload.batch_ms: must be an integer in [1, 1000]")
    processes = workload["producer_processes"]
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError("config key workload.producer_processes: must be an integer >= 1")
    # The factory checks event_mix and disorder.
    EventFactory(workload, pool_seed=0)
    producer_settings(workload)
    malformed = malformed_spec(spec, config)
    return RunSpec(arrival, float(duration), seed, batch_ms, processes, malformed)


def _seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def process_seed(seed: int, process_index: int) -> int:
    """The seed of producer process ``process_index`` (distinct per index)."""
    return int(_seed_sequence(seed, _STREAM_EVENTS, process_index).generate_state(1, np.uint64)[0])


def default_start_ns(lead_s: float = START_LEAD_S) -> int:
    """A start time lead_s from now, rounded up to a whole second of wall time."""
    t = time.time_ns() + int(lead_s * _NS_PER_S)
    return -(-t // _NS_PER_S) * _NS_PER_S


# ------------------------------------------------------------------ the source
class EventSource:
    """Batches of one producer process: its share of the schedule and its events.

    Iterating yields a Batch for every non-empty tick (tick order, no waiting); the
    caller paces them by ``batch.due_ns``. ``start_ns`` must be set before iterating
    (or is set to ``default_start_ns()`` by ``__iter__``). Draws are sequential, so
    the events of a run depend only on the seed, not on timing.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        config: Mapping[str, Any],
        process_index: int = 0,
        processes: int = 1,
    ) -> None:
        if not 0 <= process_index < processes:
            raise ValueError(f"process_index {process_index} outside 0..{processes - 1}")
        run = validate_spec(spec, config)
        workload = config["workload"]
        self.run = run
        self.process_index = process_index
        self.processes = processes
        self.batch_ms = run.batch_ms
        self.campaigns = int(workload["campaigns"])
        self.seed = process_seed(run.seed, process_index)
        self.arrival = run.arrival.scaled(1.0 / processes)
        pool_seed = int(_seed_sequence(run.seed, _STREAM_POOLS).generate_state(1)[0])
        self.factory = EventFactory(workload, pool_seed)
        # All processes of a run draw the same state path (same stream).
        state_rng = np.random.default_rng(_seed_sequence(run.seed, _STREAM_STATE_PATH))
        path = state_path_for(self.arrival, run.duration_s, state_rng)
        count_rng = np.random.default_rng(_seed_sequence(run.seed, _STREAM_COUNTS, process_index))
        self.schedule: TickSchedule = tick_schedule(
            self.arrival, run.batch_ms, run.duration_s, count_rng, path
        )
        self._event_rng = np.random.default_rng(self.seed)
        # Its own stream: the valid events are the same draws with or without injection.
        self.malformed = run.malformed
        self._bad_rng = np.random.default_rng(
            _seed_sequence(run.seed, _STREAM_MALFORMED, process_index)
        )
        self.start_ns: int | None = None

    @property
    def end_ns(self) -> int:
        """End of the schedule: no event of this source has an event time at or after it."""
        assert self.start_ns is not None
        return self.start_ns + self.schedule.n_ticks * self.batch_ms * _NS_PER_MS

    def due_ns(self, tick: int) -> int:
        assert self.start_ns is not None
        return self.start_ns + tick * self.batch_ms * _NS_PER_MS

    def batch(self, tick: int, count: int) -> Batch:
        """Draw the events of ``tick`` (call in tick order for reproducible draws)."""
        due = self.due_ns(tick)
        cols = self.factory.draw(self._event_rng, count, due)
        if not self.malformed.enabled:
            return Batch(tick, due, cols, self.factory)
        cols, bad = draw_bad_records(self._bad_rng, cols, self.factory, self.malformed, due)
        return Batch(tick, due, cols, self.factory, bad)

    def batches(self) -> Iterator[Batch]:
        for tick, count in enumerate(self.schedule.counts.tolist()):
            if count:
                yield self.batch(tick, count)

    def __iter__(self) -> Iterator[Batch]:
        if self.start_ns is None:
            self.start_ns = default_start_ns()
        return self.batches()

    def new_truth(self) -> TruthRecorder:
        return TruthRecorder(self.campaigns)

    def new_malformed(self) -> MalformedRecorder:
        return MalformedRecorder()

    def new_rate(self) -> RateRecorder:
        assert self.start_ns is not None
        rate = RateRecorder(self.start_ns)
        rate.add_scheduled_per_second(self.schedule.scheduled_per_second().tolist())
        return rate

    def describe(self) -> dict[str, Any]:
        a = self.arrival
        return {
            "process_index": self.process_index,
            "processes": self.processes,
            "seed": self.seed,
            "arrival": {
                "process": a.process,
                "rate_eps": a.rate_eps,
                "mean_rate_eps": a.mean_rate_eps,
                "low_rate_eps": a.low_rate_eps,
                "high_rate_eps": a.high_rate_eps,
                "low_to_high_per_s": a.low_to_high_per_s,
                "high_to_low_per_s": a.high_to_low_per_s,
                "period_s": a.period_s,
                "step_factor": a.step_factor,
                "step_s": a.step_s,
            },
            "batch_ms": self.batch_ms,
            "n_ticks": self.schedule.n_ticks,
            "scheduled_duration_s": self.schedule.duration_s,
            "events_scheduled": int(self.schedule.counts.sum()),
            "malformed": self.malformed.describe(),
        }


# --------------------------------------------------------------- the open loop
@dataclass
class LoopResult:
    truth: TruthRecorder
    rate: RateRecorder
    sink_report: dict[str, Any]
    interrupted: bool
    first_send_ns: int | None
    last_send_ns: int | None
    markers_sent: int = 0
    # Bad records handed to the sink (malformed-input runs); not in truth.
    malformed: MalformedRecorder = field(default_factory=MalformedRecorder)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bookkeeping_error(self) -> str | None:
        """Why sent != truth + bad records, or None when they agree exactly."""
        sent, valid, bad = self.rate.total_sent, self.truth.total_events, self.malformed.total
        if sent == valid + bad:
            return None
        return f"sent {sent} != truth {valid} + malformed {bad}"


def loop_summary(result: LoopResult) -> dict[str, Any]:
    """The counting part of a producer's summary.json (``merge_outputs`` reads it).

    ``events_sent`` counts bad records too: they are load the system under test must read
    and set aside, so the achieved rate includes them; ``events_in_truth`` is the valid
    events only."""
    rate = result.rate
    return {
        "status": "interrupted" if result.interrupted else "ok",
        "events_sent": rate.total_sent,
        "events_in_truth": result.truth.total_events,
        "events_malformed": result.malformed.total,
        "malformed_by_kind": result.malformed.by_kind(),
        "behind_ms_max": rate.behind_ms_max,
        "blocked_ms_total": round(rate.blocked_ms_total, 3),
        "first_send_ns": result.first_send_ns,
        "last_send_ns": result.last_send_ns,
        "markers_sent": result.markers_sent,
        "sink_report": result.sink_report,
    }


def run_open_loop(
    source: EventSource,
    sink: Sink,
    *,
    marker_interval_ms: int | None = None,
    watermark_bound_ms: int = 0,
    progress: TextIO | None = sys.stderr,
    should_stop: Callable[[], bool] = lambda: False,
    flush_timeout_s: float = FLUSH_TIMEOUT_S,
) -> LoopResult:
    """Send ``source``'s schedule into ``sink`` in real time (see the module doc).

    ``source.start_ns`` must be set. Raises DeliveryError (from ``sink.close``) when the
    broker did not acknowledge everything."""
    assert source.start_ns is not None, "set source.start_ns first"
    start_ns = source.start_ns
    truth = source.new_truth()
    rate = source.new_rate()
    malformed = source.new_malformed()
    time_ns, monotonic = time.time_ns, time.monotonic
    dt_ns = source.batch_ms * _NS_PER_MS
    bound_ns = watermark_bound_ms * _NS_PER_MS
    marker_ns = marker_interval_ms * _NS_PER_MS if marker_interval_ms else None
    next_marker = start_ns
    next_progress = start_ns + _NS_PER_S
    label = f"gen {source.process_index + 1}/{source.processes}"
    last_report = (start_ns, 0)
    first_send = last_send = None
    interrupted = False
    factory = source.factory
    counts = source.schedule.counts.tolist()

    def housekeeping(now: int, next_due: int) -> None:
        nonlocal next_marker, next_progress, last_report
        if marker_ns is not None and now >= next_marker:
            blocked = sink.send_markers(min(now, next_due) - bound_ns)
            if blocked:
                rate.add_sent(now, 0, 0, blocked)
            # Catch up without a burst of markers after a long stall.
            next_marker = max(next_marker + marker_ns, now)
        if progress is not None and now >= next_progress:
            sent = rate.total_sent
            t0, n0 = last_report
            eps = (sent - n0) * _NS_PER_S / max(1, now - t0)
            behind_ms = max(0, now - next_due) / _NS_PER_MS
            print(
                f"[{label}] {(now - start_ns) / _NS_PER_S:6.1f} s  sent {sent:,}  "
                f"{eps:,.0f} ev/s  behind {behind_ms:,.1f} ms  "
                f"blocked {rate.blocked_ms_total:,.0f} ms",
                file=progress,
                flush=True,
            )
            last_report = (now, sent)
            next_progress += _NS_PER_S * max(1, (now - next_progress) // _NS_PER_S + 1)

    for tick, count in enumerate(counts):
        if should_stop():
            interrupted = True
            break
        due = start_ns + tick * dt_ns
        now = time_ns()
        while now < due:
            housekeeping(now, due)
            wait_ns = due - now
            # poll() has ms resolution; the last stretch is slept precisely.
            if wait_ns > 2 * _NS_PER_MS:
                sink.idle((wait_ns - _NS_PER_MS) / _NS_PER_S)
            else:
                time.sleep(wait_ns / _NS_PER_S)
            now = time_ns()
        if count:
            batch = source.batch(tick, count)
            while True:
                accepted = sink.offer(batch, now // _NS_PER_MS)
                if accepted:
                    part = batch.columns
                    n_valid = len(part)
                    if accepted < n_valid:
                        part = part.head(accepted)
                    elif accepted > n_valid:  # bad records follow the valid events
                        assert batch.bad is not None
                        malformed.add(batch.bad.head(accepted - n_valid))
                    truth.add(
                        factory.campaign_of(part.ad),
                        part.event_type,
                        part.event_time_ns,
                        part.delayed,
                    )
                    if first_send is None:
                        first_send = now
                    last_send = now
                # Bad records count as sent: they are load too.
                rate.add_sent(now, accepted, now - due)
                if accepted == len(batch):
                    break
                batch = batch.tail(accepted)
                # Broker back-pressure: the wait counts as lateness of the rest.
                t_block = monotonic()
                sink.wait_for_space(0.005)
                blocked_ns = int((monotonic() - t_block) * _NS_PER_S)
                now = time_ns()
                rate.add_sent(now, 0, now - due, blocked_ns)
        now = time_ns()
        housekeeping(now, due + dt_ns)

    if marker_ns is not None and not interrupted:
        # Final promise: this producer sends nothing more; every event time < end.
        sink.send_markers(source.end_ns)
    report = sink.close(flush_timeout_s)
    markers = int(report.get("markers", 0))
    if progress is not None:
        print(
            f"[{label}] done: sent {rate.total_sent:,} of {rate.total_scheduled:,} scheduled, "
            f"max behind {rate.behind_ms_max:,.1f} ms, blocked {rate.blocked_ms_total:,.0f} ms",
            file=progress,
            flush=True,
        )
    return LoopResult(
        truth, rate, report, interrupted, first_send, last_send, markers, malformed
    )


# ------------------------------------------------------- one producer process
def part_dir(out_dir: str | Path, process_index: int) -> Path:
    return Path(out_dir) / "parts" / f"p{process_index}"


def run_process(
    spec: Mapping[str, Any],
    config: Mapping[str, Any],
    sink: Mapping[str, Any],
    out_dir: str | Path,
    process_index: int = 0,
    processes: int = 1,
    start_ns: int | Callable[[], int] | None = None,
    progress: TextIO | None = sys.stderr,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """One producer process: run the open loop and write its truth.csv, rate.csv,
    summary.json (and mmpp_states.csv) into ``parts/p<index>/`` of ``out_dir``.

    ``start_ns``: the schedule start, or a function called once everything is set up
    (producer connected) that returns it, or None for ``default_start_ns()``.
    Returns the summary; raises DeliveryError after writing it when deliveries failed."""
    sink = validate_sink(sink)
    source = EventSource(spec, config, process_index, processes)
    out = part_dir(out_dir, process_index)
    out.mkdir(parents=True, exist_ok=True)
    kafka_sink = make_sink(sink, config["workload"], process_index)
    if callable(start_ns):
        start_ns = start_ns()
    source.start_ns = start_ns if start_ns is not None else default_start_ns()
    summary: dict[str, Any] = {
        **source.describe(),
        "start_ns": source.start_ns,
        "schedule_end_ns": source.end_ns,
        "sink": {k: v for k, v in sink.items() if k != "kind"} | {"kind": sink["kind"]},
    }
    markers = sink.get("watermark_markers") and sink["kind"] == "kafka"
    cpu0 = time.process_time()
    try:
        result = run_open_loop(
            source,
            kafka_sink,
            marker_interval_ms=int(sink["marker_interval_ms"]) if markers else None,
            watermark_bound_ms=int(sink.get("watermark_bound_ms", 0)),
            progress=progress,
            should_stop=should_stop,
        )
    except DeliveryError as exc:
        # The counts cannot be trusted: write the summary only (no truth), then fail.
        summary |= {"status": "delivery_failed", "error": str(exc), "sink_report": exc.report}
        write_json_atomic(out / "summary.json", summary)
        raise
    rate = result.rate
    summary |= loop_summary(result)
    # CPU of this process (all threads, librdkafka's included) during the loop.
    summary["cpu_s_loop"] = round(time.process_time() - cpu0, 3)
    summary["cpus_allowed"] = sorted(os.sched_getaffinity(0))  # run.load_cpus, if set
    if result.bookkeeping_error:  # bookkeeping must agree exactly
        raise AssertionError(result.bookkeeping_error)
    result.truth.write_csv(out / "truth.csv")
    result.malformed.write_csv(out / "malformed.csv")
    rate.write_csv(out / "rate.csv")
    if source.schedule.state_path is not None:
        write_text_atomic(out / "mmpp_states.csv", source.schedule.state_path.csv_text())
    write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of one child producer process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, help="run spec (JSON file)")
    parser.add_argument("--config-json", required=True, help="validated config (JSON file)")
    parser.add_argument("--sink", required=True, help="sink dict (JSON file)")
    parser.add_argument("--out", required=True, help="generator output directory")
    parser.add_argument("--process-index", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--start-at-ns", type=int, default=None, help="common schedule start")
    parser.add_argument(
        "--handshake",
        action="store_true",
        help="when ready print 'ready' on stdout, then read the start time (ns) from stdin",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    config = json.loads(Path(args.config_json).read_text())
    sink = json.loads(Path(args.sink).read_text())

    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    def handshake() -> int:
        print("ready", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            raise SystemExit("generator: no start time received (launcher gone)")
        return int(line)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        summary = run_process(
            spec,
            config,
            sink,
            args.out,
            args.process_index,
            args.processes,
            handshake if args.handshake else args.start_at_ns,
            None if args.quiet else sys.stderr,
            lambda: stop_requested,
        )
    except DeliveryError as exc:
        print(f"generator {args.process_index}: {exc}", file=sys.stderr, flush=True)
        return EXIT_DELIVERY_FAILED
    return EXIT_INTERRUPTED if summary["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
