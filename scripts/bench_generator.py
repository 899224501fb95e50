"""Benchmark of the open-loop generator into a real Kafka broker (a figure, not a test).

What it measures, on this machine, with the project's own broker:

1. Hot path: ns per event of each step (draw the columns, encode JSON, truth bookkeeping,
   confluent-kafka ``produce``) so the cost is known, not guessed.
2. Clients: raw produce throughput of pre-encoded events with confluent-kafka and with
   kafka-python (the choice of client is measured).
3. Sustainable rate: for each (producer processes, compression) the highest constant rate
   at which every second of a short trial (default 10 s) sent within 1 % of its schedule,
   found by a ramp (x2) and a bisection. Each trial is a real ``launch_generators`` run
   into a fresh topic. A rate fails only when ``--attempts`` (default 2) trials in a row
   fail, because other jobs on a shared machine can stall a single trial; every trial,
   with the load average it ran under, is in trials.csv.

Outputs in ``--out``: hot_path.csv, clients.csv, trials.csv, sustained.csv, bench.json
(machine, versions, load) and bench_generator.png; the tables are printed as well.
Without ``--bootstrap`` it starts a private broker (sdsbench.services.kafka.KafkaBroker)
in a temporary directory and stops it at the end.

    .venv/main/bin/python scripts/bench_generator.py --out data/bench/generator
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sdsbench.config import load_config  # noqa: E402
from sdsbench.services.kafka import KafkaBroker, create_topic, delete_topics  # noqa: E402
from sdsbench.workload.generator import EventSource  # noqa: E402
from sdsbench.workload.launcher import GeneratorError, launch_generators  # noqa: E402
from sdsbench.workload.sinks import librdkafka_config, producer_settings  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def wait_for_quiet(max_load: float | None, max_wait_s: float) -> None:
    """On a shared machine, wait (bounded) until the 1-minute load average is below
    max_load, so trials are not measured against other people's jobs. Each trial records
    the load it ran under either way."""
    if max_load is None:
        return
    deadline = time.monotonic() + max_wait_s
    announced = False
    while load_avg() > max_load and time.monotonic() < deadline:
        if not announced:
            log(f"  waiting for load average < {max_load} (now {load_avg()}) ...")
            announced = True
        time.sleep(5)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    cells = [[f"{r[c]:,.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def spec_for(rate: float, duration_s: float, seed: int = 1) -> dict[str, Any]:
    return {
        "run_id": f"bench-r{int(rate)}",
        "arrival": {"process": "constant", "rate_eps": float(rate)},
        "duration_s": duration_s,
        "seed": seed,
    }


# --------------------------------------------------------------------- hot path
def measure_hot_path(config: dict, bootstrap: str, topic: str, n_batches: int = 300) -> list[dict]:
    """CPU ns/event of each step at 1000 events per batch (200k ev/s in 5 ms ticks).

    CPU time of the calling thread (time.thread_time), so other load on the machine does
    not inflate it; for produce also the whole process's CPU (librdkafka's own threads
    compress, batch and send) and the wall time until the broker acknowledged all."""
    from confluent_kafka import Producer

    source = EventSource(spec_for(200_000, 2.0), config)
    source.start_ns = time.time_ns()
    factory, rng = source.factory, np.random.default_rng(3)
    n = 1000
    due = source.start_ns
    truth = source.new_truth()
    spent = {"draw": 0, "json": 0, "truth": 0, "rows": 0}
    clock = time.thread_time_ns
    batches = []
    for _ in range(n_batches):
        t = clock()
        cols = factory.draw(rng, n, due)
        t1 = clock()
        lines = factory.json_lines(cols, due // 1_000_000)
        t2 = clock()
        truth.add(factory.campaign_of(cols.ad), cols.event_type, cols.event_time_ns, cols.delayed)
        t3 = clock()
        factory.rows(cols, due // 1_000_000)
        t4 = clock()
        spent["draw"] += t1 - t
        spent["json"] += t2 - t1
        spent["truth"] += t3 - t2
        spent["rows"] += t4 - t3
        batches.append(lines)
    conf = librdkafka_config(bootstrap, producer_settings(config["workload"]), "bench-hot")
    producer = Producer(conf)
    producer.list_topics(topic, timeout=10)
    wall0, proc0, thread0 = time.perf_counter(), time.process_time(), clock()
    for lines in batches:
        for value in lines:
            while True:
                try:
                    producer.produce(topic, value)
                    break
                except BufferError:
                    producer.poll(0.005)
        producer.poll(0)
    thread_produce = clock() - thread0
    left = producer.flush(60)
    wall, proc = time.perf_counter() - wall0, time.process_time() - proc0
    if left:
        raise RuntimeError(f"hot path: {left} messages undelivered")
    events = n * n_batches
    return [
        {"step": "draw columns (numpy), thread CPU", "ns_per_event": spent["draw"] / events},
        {"step": "encode JSON, thread CPU", "ns_per_event": spent["json"] / events},
        {"step": "truth bookkeeping, thread CPU", "ns_per_event": spent["truth"] / events},
        {"step": "rows() for A1 (not on Kafka path)", "ns_per_event": spent["rows"] / events},
        {"step": "produce + poll(0), thread CPU", "ns_per_event": thread_produce / events},
        {"step": "produce + flush, process CPU", "ns_per_event": proc / events * 1e9},
        {"step": "produce + flush, wall", "ns_per_event": wall / events * 1e9},
    ]


# ---------------------------------------------------------------------- clients
def measure_clients(config: dict, bootstrap: str, n_events: int) -> list[dict]:
    """Raw throughput (produce + flush) of pre-encoded events with both clients."""
    from confluent_kafka import Producer
    from kafka import KafkaProducer

    source = EventSource(spec_for(200_000, 2.0), config)
    source.start_ns = time.time_ns()
    lines: list[bytes] = []
    for batch in source.batches():
        lines.extend(batch.json_lines(time.time_ns() // 1_000_000))
        if len(lines) >= n_events:
            break
    lines = lines[:n_events]
    results = []
    settings = producer_settings(config["workload"])
    for compression, linger_ms in (
        ("none", settings["linger_ms"]),
        ("lz4", settings["linger_ms"]),
        ("none", 20),
    ):
        topic = f"bench-clients-ck-{compression}-{time.time_ns()}"
        create_topic(bootstrap, topic, 4)
        s = dict(settings, compression=compression, linger_ms=linger_ms)
        producer = Producer(librdkafka_config(bootstrap, s, "bench-ck"))
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i, value in enumerate(lines):
            while True:
                try:
                    producer.produce(topic, value)
                    break
                except BufferError:
                    producer.poll(0.005)
            if i % 1000 == 0:
                producer.poll(0)
        left = producer.flush(120)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        delete_topics(bootstrap, [topic])
        results.append(
            _client_row("confluent-kafka", compression, linger_ms, len(lines), wall, cpu, left)
        )
    import kafka

    for compression in ("none", "lz4"):
        if compression == "lz4":
            try:
                import lz4  # noqa: F401
            except ImportError:
                log("kafka-python lz4 needs the lz4 package: skipped")
                continue
        topic = f"bench-clients-kp-{compression}-{time.time_ns()}"
        create_topic(bootstrap, topic, 4)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=int(settings["linger_ms"]),
            batch_size=int(settings["batch_bytes"]),
            compression_type=None if compression == "none" else compression,
            enable_idempotence=bool(settings["idempotence"]),
        )
        cpu0, t0 = time.process_time(), time.perf_counter()
        for value in lines:
            producer.send(topic, value)
        producer.flush(timeout=300)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        producer.close()
        delete_topics(bootstrap, [topic])
        name = f"kafka-python {kafka.__version__}"
        results.append(
            _client_row(name, compression, settings["linger_ms"], len(lines), wall, cpu, 0)
        )
    return results


def _client_row(
    client: str, compression: str, linger_ms: int, n: int, wall: float, cpu: float, left: int
) -> dict[str, Any]:
    return {
        "client": client,
        "compression": compression,
        "linger_ms": linger_ms,
        "events": n,
        "wall_s": round(wall, 2),
        "events_per_s": n / wall,
        "cpu_us_per_event": cpu / n * 1e6,
        "undelivered": left,
        "load_avg_1m": load_avg(),
    }


# ----------------------------------------------------------------------- trials
def run_trial(
    config: dict,
    bootstrap: str,
    rate: float,
    processes: int,
    compression: str,
    trial_s: float,
    tolerance: float,
    partitions: int,
    out_dir: Path,
    broker_pid: int | None,
) -> dict[str, Any]:
    import psutil

    cfg = copy.deepcopy(config)
    cfg["workload"]["producer_processes"] = processes
    cfg["workload"].setdefault("kafka_producer", {})["compression"] = compression
    topic = f"bench-gen-p{processes}-{compression}-r{int(rate)}-{time.time_ns()}"
    create_topic(bootstrap, topic, partitions)
    sink = {"kind": "kafka", "bootstrap": bootstrap, "topic": topic}
    trial_dir = out_dir / "trials" / topic
    load = load_avg()
    broker = psutil.Process(broker_pid) if broker_pid else None
    broker_cpu0 = sum(broker.cpu_times()[:2]) if broker else 0.0
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    error = ""
    try:
        summary = launch_generators(
            spec_for(rate, trial_s), cfg, sink, trial_dir, quiet=True
        ).wait()
    except GeneratorError as exc:
        summary, error = None, str(exc)
    finally:
        delete_topics(bootstrap, [topic])
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    broker_cpu = (sum(broker.cpu_times()[:2]) - broker_cpu0) if broker else float("nan")
    row: dict[str, Any] = {
        "processes": processes,
        "compression": compression,
        "target_eps": int(rate),
        "passed": False,
        "achieved_eps": 0.0,
        "worst_second_ratio": 0.0,
        "behind_ms_max": float("nan"),
        "blocked_ms": float("nan"),
        "gen_cpu_s": round(gen_cpu, 2),
        "loop_cpu_us_per_event": float("nan"),
        "broker_cpu_s": round(broker_cpu, 2),
        "load_avg_1m": load,
        "error": error,
    }
    if summary is None:
        return row
    with open(trial_dir / "rate.csv", newline="") as fh:
        seconds = list(csv.DictReader(fh))
    duration = int(round(trial_s))
    ratios = []
    for r in seconds:
        s, scheduled, sent = int(r["second"]), int(r["scheduled"]), int(r["sent"])
        if s < duration:
            ratios.append(sent / scheduled if scheduled else 1.0)
        elif sent > tolerance * rate:  # backlog carried past the schedule's end
            ratios.append(1.0 + sent / rate)
    worst = max(ratios, key=lambda x: abs(1 - x))
    row.update(
        passed=all(abs(1 - x) <= tolerance for x in ratios),
        achieved_eps=round(summary["events_sent"] / summary["send_span_s"], 1)
        if summary["send_span_s"]
        else 0.0,
        worst_second_ratio=round(worst, 4),
        behind_ms_max=round(summary["behind_ms_max"], 1),
        blocked_ms=round(summary["blocked_ms_total"], 1),
        # CPU of the producer processes during the send loop (startup excluded).
        loop_cpu_us_per_event=round(summary["cpu_s_loop"] / summary["events_sent"] * 1e6, 3),
    )
    # The per-trial files were only needed for the check; keep the directory small.
    for part in sorted(trial_dir.rglob("*"), reverse=True):
        if part.is_file() and part.name not in ("rate.csv", "summary.json"):
            part.unlink()
    return row


def search(
    config: dict,
    bootstrap: str,
    processes: int,
    compression: str,
    args: argparse.Namespace,
    broker_pid: int | None,
    trials: list[dict],
) -> dict[str, Any]:
    """Ramp (x2) until a trial fails, then bisect between the last pass and the first fail."""

    def trial(rate: float) -> bool:
        # On a shared machine other jobs can stall one trial; a rate counts as failed only
        # when --attempts trials in a row fail (every attempt is recorded in trials.csv).
        for attempt in range(1, args.attempts + 1):
            if attempt_once(rate, attempt):
                return True
        return False

    def attempt_once(rate: float, attempt: int) -> bool:
        wait_for_quiet(args.max_load, args.max_wait_s)
        row = run_trial(
            config,
            bootstrap,
            rate,
            processes,
            compression,
            args.trial_s,
            args.tolerance,
            args.partitions,
            args.out,
            broker_pid,
        )
        row["attempt"] = attempt
        trials.append(row)
        write_csv(args.out / "trials.csv", trials)
        log(
            f"  p={processes} {compression:4s} target {int(rate):>9,} -> "
            f"{'PASS' if row['passed'] else 'fail'}  worst second {row['worst_second_ratio']:.3f}"
            f"  behind {row['behind_ms_max']} ms  blocked {row['blocked_ms']} ms  "
            f"loop cpu {row['loop_cpu_us_per_event']:.2f} us/ev  load {row['load_avg_1m']}"
            + (f"  ERROR {row['error'][:120]}" if row["error"] else "")
        )
        return bool(row["passed"])

    lo, hi = 0.0, None
    rate = float(args.start_rate)
    while rate <= args.max_rate:
        if trial(rate):
            lo = rate
            rate *= 2
        else:
            hi = rate
            break
    if hi is None:
        return {
            "processes": processes,
            "compression": compression,
            "sustained_eps": int(lo),
            "first_failed_eps": "",
            "note": f"max-rate {args.max_rate} reached",
        }
    if lo == 0.0:  # even the start rate failed: halve down
        rate = hi / 2
        while rate >= 1000 and not trial(rate):
            hi, rate = rate, rate / 2
        lo = rate if rate >= 1000 else 0.0
    for _ in range(args.bisect_steps):
        if lo and (hi - lo) / lo <= 0.02:
            break
        mid = round((lo + hi) / 2, -3)
        if trial(mid):
            lo = mid
        else:
            hi = mid
    return {
        "processes": processes,
        "compression": compression,
        "sustained_eps": int(lo),
        "first_failed_eps": int(hi),
        "note": "",
    }


# ------------------------------------------------------------------------- plot
def plot(out: Path, trials: list[dict], sustained: list[dict], clients: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    configs = sorted({(t["processes"], t["compression"]) for t in trials})
    for (p, c), color in zip(configs, plt.cm.tab10.colors, strict=False):
        rows = sorted(
            (t for t in trials if (t["processes"], t["compression"]) == (p, c)),
            key=lambda t: t["target_eps"],
        )
        x = [t["target_eps"] / 1e3 for t in rows]
        y = [t["target_eps"] * t["worst_second_ratio"] / 1e3 for t in rows]
        ax1.plot(x, y, "-", color=color, alpha=0.4)
        for t, xi, yi in zip(rows, x, y, strict=True):
            ax1.plot(
                xi,
                yi,
                "o" if t["passed"] else "x",
                color=color,
                label=f"{p} proc, {c}" if t is rows[0] else None,
            )
    lim = max([t["target_eps"] for t in trials] or [1]) / 1e3 * 1.05
    ax1.plot([0, lim], [0, lim], "k:", lw=0.8, label="achieved = offered")
    ax1.set_xlabel("offered rate (k events/s)")
    ax1.set_ylabel("worst second's sent rate (k events/s)")
    ax1.set_title("Trials (o: every second within 1 %, x: not)")
    ax1.legend(fontsize=8)
    labels = [f"gen {s['processes']}p {s['compression']}" for s in sustained]
    values = [s["sustained_eps"] / 1e3 for s in sustained]
    labels += [
        f"raw {c['client'].split()[0]} {c['compression']} linger {c['linger_ms']}" for c in clients
    ]
    values += [c["events_per_s"] / 1e3 for c in clients]
    ax2.barh(labels, values, color=["C0"] * len(sustained) + ["C7"] * len(clients))
    for i, v in enumerate(values):
        ax2.text(v, i, f" {v:,.0f}k", va="center", fontsize=8)
    ax2.set_xlabel("k events/s")
    ax2.set_title("Sustained open-loop rate; raw client throughput")
    ax2.invert_yaxis()
    fig.tight_layout()
    tmp = out / "bench_generator.tmp.png"
    fig.savefig(tmp, dpi=130)
    os.replace(tmp, out / "bench_generator.png")


# ------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a private one")
    parser.add_argument("--config", default=None, help="config file (default config/config.yaml)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compression", nargs="+", default=["none", "lz4"])
    parser.add_argument("--trial-s", type=float, default=10.0)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--start-rate", type=float, default=50_000)
    parser.add_argument("--max-rate", type=float, default=1_600_000)
    parser.add_argument("--bisect-steps", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--client-events", type=int, default=300_000)
    parser.add_argument("--skip-clients", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--broker-heap-mb", type=int, default=1024)
    parser.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="before each measurement wait until the 1-min load average is below this",
    )
    parser.add_argument("--max-wait-s", type=float, default=600.0)
    parser.add_argument(
        "--attempts", type=int, default=2, help="trials at one rate before it counts as failed"
    )
    args = parser.parse_args(argv)
    # Stop cleanly (the finally below stops the private broker) on SIGTERM, and on SIGINT
    # even when started in the background with SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args.out.mkdir(parents=True, exist_ok=True)
    config = load_config(*([args.config] if args.config else []))

    broker = None
    broker_dir = None
    bootstrap = args.bootstrap
    broker_pid = None
    if not bootstrap:
        broker_dir = tempfile.mkdtemp(prefix="sdsbench-bench-broker-")
        broker = KafkaBroker(broker_dir, heap_mb=args.broker_heap_mb, partitions=args.partitions)
        log(f"starting a private Kafka broker in {broker_dir}")
        bootstrap = broker.start()
        broker_pid = broker.pid
    info: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "bootstrap": bootstrap,
        "private_broker": broker is not None,
        "load_avg_1m_start": load_avg(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        import confluent_kafka
        import kafka

        info["versions"] = {
            "confluent_kafka": confluent_kafka.version()[0],
            "librdkafka": confluent_kafka.libversion()[0],
            "kafka_python": kafka.__version__,
        }
        wait_for_quiet(args.max_load, args.max_wait_s)
        topic = f"bench-hot-{time.time_ns()}"
        create_topic(bootstrap, topic, args.partitions)
        try:
            hot = measure_hot_path(config, bootstrap, topic)
        finally:
            delete_topics(bootstrap, [topic])
        write_csv(args.out / "hot_path.csv", hot)
        print_table("Hot path, ns per event (1000-event batches)", hot)
        clients: list[dict] = []
        if not args.skip_clients:
            wait_for_quiet(args.max_load, args.max_wait_s)
            log("measuring raw client throughput ...")
            clients = measure_clients(config, bootstrap, args.client_events)
            write_csv(args.out / "clients.csv", clients)
            print_table("Raw produce throughput of pre-encoded events (produce + flush)", clients)
        trials: list[dict] = []
        sustained: list[dict] = []
        if not args.skip_search:
            for processes in args.processes:
                for compression in args.compression:
                    log(f"searching: {processes} process(es), compression {compression}")
                    sustained.append(
                        search(config, bootstrap, processes, compression, args, broker_pid, trials)
                    )
                    write_csv(args.out / "sustained.csv", sustained)
            print_table("All trials", trials)
            print_table(
                f"Highest sustained rate (every second within {args.tolerance:.0%} of target, "
                f"{args.trial_s:.0f} s trials)",
                sustained,
            )
        info["load_avg_1m_end"] = load_avg()
        info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        tmp = args.out / "bench.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, args.out / "bench.json")
        plot(args.out, trials, sustained, clients)
        log(f"wrote {args.out}/bench_generator.png, trials.csv, sustained.csv")
    finally:
        if broker is not None:
            broker.stop()
            import shutil

            shutil.rmtree(broker_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
