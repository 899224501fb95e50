"""What the Spark and Flink tests share: malformed input injected into a running job's
input topic, the raw topic read back, the check of a run's windows against the
generator's truth minus the events the engine reported late, and the processes a cluster
under a directory left behind."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition

from sdsbench import contract
from sdsbench.process_control import pid_alive, pid_cmdline
from sdsbench.services.kafka import end_offsets

KEY = ["campaign_id", "window_start_ms"]
COUNTS = ("views", "clicks", "purchases")


class MalformedInjector(threading.Thread):
    """Waits until the generator's events flow into the input topic, then sends the
    records ``records(now_ms)`` gives (raw value, the reason the engine should give) and
    remembers when and what."""

    def __init__(self, bootstrap: str, topic: str,
                 records: Callable[[int], list[tuple[bytes, str]]]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.sent: list[tuple[bytes, str]] = []
        self.sent_at_ms: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    if sum(end_offsets(self.bootstrap, self.topic).values()) > 5000:
                        break
                except Exception:  # noqa: BLE001 - the topic may not exist yet
                    pass
                time.sleep(0.5)
            producer = Producer({"bootstrap.servers": self.bootstrap})
            now_ms = time.time_ns() // 10**6
            for raw, reason in self.records(now_ms):
                producer.produce(self.topic, raw, partition=0)
                self.sent.append((raw, reason))
            assert producer.flush(10) == 0
            self.sent_at_ms = now_ms
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def read_raw_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of partition 0 of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < end and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                values.append(msg.value())
        return values
    finally:
        consumer.close()


def assert_windows_match_truth(out: Path, fired: Callable[[pd.Series], pd.Series],
                               updates: bool = False) -> pd.DataFrame:
    """Every emitted window of run ``out`` equals the generator's truth minus the events
    the run reported dropped late (metrics/late.csv); every window ``fired`` says the
    final watermark closed is emitted, none other. ``fired`` maps window starts to
    booleans. One record per window, or with ``updates`` (update mode) the last record of
    each window in output order is its answer. Returns results.csv (the answers)."""
    results = pd.read_csv(out / "results.csv")
    if updates:
        # Update mode also emits windows the final watermark left open: compared only
        # up to it, as the analysis does.
        results = results.drop_duplicates(KEY, keep="last")
        results = results[fired(results["window_start_ms"])]
    assert not results.duplicated(KEY).any()
    truth = pd.read_csv(out / "generator" / "truth.csv")
    dropped = [f"{column}_dropped" for column in COUNTS]
    late = pd.read_csv(out / "metrics" / "late.csv")[KEY + dropped].astype("int64")
    expected = truth.merge(late, on=KEY, how="left").fillna(0)
    for column in COUNTS:
        expected[column] -= expected[f"{column}_dropped"]
    expected = expected[expected[list(COUNTS)].sum(axis=1) > 0]
    closed = expected[fired(expected["window_start_ms"])]
    assert fired(results["window_start_ms"]).all()
    merged = closed.merge(results, on=KEY, how="outer", suffixes=("_truth", ""),
                          indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["views"] == merged["views_truth"]).all()
    assert (merged["clicks"] == merged["clicks_truth"]).all()
    assert len(merged) >= 10  # at least one complete window of every campaign
    return results


def window_end(start: pd.Series) -> pd.Series:
    return start + contract.WINDOW_MS


def processes_of(run_dir: Path) -> dict[int, str]:
    """Live processes started for ``run_dir`` (a cluster's state directory): its path in
    their command line or working directory. Pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        cmd = pid_cmdline(pid)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if pid_alive(pid) and (str(run_dir) in cmd or cwd.startswith(str(run_dir))):
            found[pid] = cmd
    return found


def assert_daemons_are_jvms(pids: dict[str, int], main_class: Callable[[str], str]) -> None:
    """Each daemon's pid (name -> pid, all distinct) is the JVM itself, running
    ``main_class(name)`` and leading its own process group (a start script exec'd java)."""
    assert len(set(pids.values())) == len(pids)
    for name, pid in pids.items():
        cmd = pid_cmdline(pid)
        assert Path(cmd.split(" ", 1)[0]).name == "java", cmd
        assert main_class(name) in cmd
        assert os.getpgid(pid) == pid
