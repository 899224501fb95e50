"""Exact ground truth and send-rate bookkeeping of the generator.

``TruthRecorder`` counts what was really handed to the sink, per (campaign, event-time
window), split into on-time and delayed events (delayed = given an event time earlier
than the send time). ``RateRecorder`` keeps per second of the run the scheduled and the
sent events, the worst lateness against the schedule and the time blocked by the sink's
back-pressure. Both write CSV atomically and merge per-process files by summing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sdsbench.contract import EVENT_TYPES, WINDOW_MS
from sdsbench.rundir import write_text_atomic

TRUTH_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "window_start_ms",
    "views",
    "clicks",
    "purchases",
    "views_delayed",
    "clicks_delayed",
    "purchases_delayed",
)
_COUNT_COLUMNS = TRUTH_COLUMNS[2:]
RATE_COLUMNS: tuple[str, ...] = ("second", "scheduled", "sent", "behind_ms_max", "blocked_ms")
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


class TruthRecorder:
    """Per (campaign, window) counts of events by type, on time and delayed."""

    def __init__(self, campaigns: int, window_ms: int = WINDOW_MS) -> None:
        self.campaigns = campaigns
        self.window_ms = window_ms
        # window start (ms) -> counts[campaign, 2 * event_type + delayed]
        self._windows: dict[int, np.ndarray] = {}
        self.total_events = 0

    def add(
        self,
        campaign: np.ndarray,
        event_type: np.ndarray,
        event_time_ns: np.ndarray,
        delayed: np.ndarray,
    ) -> None:
        """Count events that were handed to the sink."""
        n = len(event_time_ns)
        if n == 0:
            return
        width = 2 * len(EVENT_TYPES)
        slot = campaign * width + event_type * 2 + delayed.astype(np.int64)
        windows = (event_time_ns // _NS_PER_MS) // self.window_ms
        first, last = int(windows.min()), int(windows.max())
        # Most batches lie in one window; only delayed events can reach back into
        # earlier ones, so a loop over the few distinct windows stays cheap.
        for w in range(first, last + 1):
            picked = slot if first == last else slot[windows == w]
            if len(picked) == 0:
                continue
            counts = np.bincount(picked, minlength=self.campaigns * width)
            key = w * self.window_ms
            if key in self._windows:
                self._windows[key] += counts.reshape(self.campaigns, width)
            else:
                self._windows[key] = counts.reshape(self.campaigns, width).copy()
        self.total_events += n

    def rows(self) -> list[tuple[int, ...]]:
        """Truth rows (TRUTH_COLUMNS order), sorted, windows without events left out."""
        out = []
        for window_start in sorted(self._windows):
            counts = self._windows[window_start]
            for campaign in range(self.campaigns):
                c = counts[campaign]
                on_time, delayed = c[0::2], c[1::2]
                total = on_time + delayed
                if total.sum() == 0:
                    continue
                out.append((campaign, window_start, *map(int, total), *map(int, delayed)))
        out.sort()
        return out

    def write_csv(self, path: str | Path) -> None:
        write_text_atomic(path, _csv_text(TRUTH_COLUMNS, self.rows()))


class RateRecorder:
    """Per second of the run (relative to the schedule start): scheduled events (by due
    time), sent events (by hand-off wall time), worst lateness against the schedule and
    time blocked by back-pressure."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self._scheduled: dict[int, int] = {}
        self._sent: dict[int, int] = {}
        self._behind_ms: dict[int, float] = {}
        self._blocked_ms: dict[int, float] = {}

    def _second(self, t_ns: int) -> int:
        return (t_ns - self.start_ns) // _NS_PER_S

    def add_scheduled_per_second(self, scheduled: Sequence[int]) -> None:
        """Scheduled counts for seconds 0, 1, ... (from the tick schedule)."""
        for second, count in enumerate(scheduled):
            self._scheduled[second] = self._scheduled.get(second, 0) + int(count)

    def add_scheduled(self, due_ns: int, count: int) -> None:
        s = self._second(due_ns)
        self._scheduled[s] = self._scheduled.get(s, 0) + count

    def add_sent(self, sent_ns: int, count: int, behind_ns: int, blocked_ns: int = 0) -> None:
        """``count`` events of a batch handed over at ``sent_ns``, ``behind_ns`` after
        their due time (blocked time included); ``blocked_ns`` spent waiting for space."""
        s = self._second(sent_ns)
        self._sent[s] = self._sent.get(s, 0) + count
        behind_ms = max(0, behind_ns) / _NS_PER_MS
        if behind_ms > self._behind_ms.get(s, 0.0):
            self._behind_ms[s] = behind_ms
        else:
            self._behind_ms.setdefault(s, 0.0)
        if blocked_ns:
            self._blocked_ms[s] = self._blocked_ms.get(s, 0.0) + blocked_ns / _NS_PER_MS

    @property
    def total_sent(self) -> int:
        return sum(self._sent.values())

    @property
    def total_scheduled(self) -> int:
        return sum(self._scheduled.values())

    @property
    def behind_ms_max(self) -> float:
        return max(self._behind_ms.values(), default=0.0)

    @property
    def blocked_ms_total(self) -> float:
        return sum(self._blocked_ms.values())

    def rows(self) -> list[tuple]:
        seconds = set(self._scheduled) | set(self._sent)
        if not seconds:
            return []
        out = []
        for s in range(min(0, min(seconds)), max(seconds) + 1):
            out.append(
                (
                    s,
                    self._scheduled.get(s, 0),
                    self._sent.get(s, 0),
                    round(self._behind_ms.get(s, 0.0), 3),
                    round(self._blocked_ms.get(s, 0.0), 3),
                )
            )
        return out

    def write_csv(self, path: str | Path) -> None:
        write_text_atomic(path, _csv_text(RATE_COLUMNS, self.rows()))


def _csv_text(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def _read_csv(path: str | Path, columns: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != tuple(columns):
            raise ValueError(f"{path}: expected columns {list(columns)}, got {reader.fieldnames}")
        return list(reader)


def merge_truth_files(paths: Sequence[str | Path], out: str | Path) -> int:
    """Sum per-process truth files into ``out``; returns the total number of events."""
    totals: dict[tuple[int, int], list[int]] = {}
    for path in paths:
        for row in _read_csv(path, TRUTH_COLUMNS):
            key = (int(row["campaign_id"]), int(row["window_start_ms"]))
            counts = totals.setdefault(key, [0] * len(_COUNT_COLUMNS))
            for i, name in enumerate(_COUNT_COLUMNS):
                counts[i] += int(row[name])
    rows = [(*key, *counts) for key, counts in sorted(totals.items())]
    write_text_atomic(out, _csv_text(TRUTH_COLUMNS, rows))
    return sum(sum(r[2:5]) for r in rows)


def merge_rate_files(paths: Sequence[str | Path], out: str | Path) -> None:
    """Merge per-process rate files (same schedule start): counts and blocked time sum,
    behind_ms_max takes the maximum."""
    merged: dict[int, list[float]] = {}
    for path in paths:
        for row in _read_csv(path, RATE_COLUMNS):
            acc = merged.setdefault(int(row["second"]), [0, 0, 0.0, 0.0])
            acc[0] += int(row["scheduled"])
            acc[1] += int(row["sent"])
            acc[2] = max(acc[2], float(row["behind_ms_max"]))
            acc[3] += float(row["blocked_ms"])
    rows = [
        (s, int(a[0]), int(a[1]), round(a[2], 3), round(a[3], 3)) for s, a in sorted(merged.items())
    ]
    write_text_atomic(out, _csv_text(RATE_COLUMNS, rows))
