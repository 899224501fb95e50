"""Malformed input: a seeded share of the sent events replaced by bad records.

A malformed-input run sets ``malformed: {fraction, kinds}`` (the run spec's own, else
``workload.malformed`` of the config). Each scheduled event is independently, with
probability ``fraction``, replaced by a bad record of a kind drawn uniformly from
``kinds``; the bad record is built from the event it replaces, with exactly one defect:

- ``not_json``: the event's JSON cut after 1 .. len-1 bytes (a prefix of an object is
  never complete JSON: its closing brace is the last byte);
- ``missing_field``: one of the contract's seven fields left out;
- ``unknown_ad``: ``ad_id`` a random UUID that is not in the ad catalog;
- ``absurd_timestamp``: ``event_time_ns`` 0, negative, or one year after the due time
  (``contract.is_plausible_event_time`` rejects all three).

Every kind maps to the contract reject reason of the same name (``REASON_OF_KIND``), the
reason ``contract.validate_event`` gives it, so the analysis compares injected and
set-aside counts per reason. Bad records are load: they are sent, counted as sent in
rate.csv and the summary, and never enter truth.csv (truth = valid events only); their
exact counts go to ``malformed.csv``, per kind and per event-time window of the event each
one replaced (``window_start_ms``; for ``unknown_ad`` and most ``missing_field`` records
that is the window the record itself names). The window matters where an engine decides a
reason only when a window fires (Flink: ``unknown_ad`` after its first aggregation): a bad
record in a window that never fires is never judged, like the valid events there.

Draws come from their own random stream, so a run with ``fraction: 0`` sends exactly the
events it sent before malformed input existed, and a run with ``fraction > 0`` replaces
events of that same stream.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdsbench.config import ConfigError
from sdsbench.contract import EVENT_FIELDS, REJECT_REASONS, WINDOW_MS
from sdsbench.rundir import write_text_atomic

if TYPE_CHECKING:
    from sdsbench.workload.events import EventColumns, EventFactory

MALFORMED_KINDS: tuple[str, ...] = ("not_json", "missing_field", "unknown_ad", "absurd_timestamp")
# The contract reject reason each kind must be set aside with.
REASON_OF_KIND: dict[str, str] = {kind: kind for kind in MALFORMED_KINDS}
assert set(REASON_OF_KIND.values()) <= set(REJECT_REASONS)
MALFORMED_COLUMNS: tuple[str, ...] = ("kind", "reason", "window_start_ms", "count")
_NS_PER_YEAR = 365 * 86_400 * 1_000_000_000


@dataclass(frozen=True)
class MalformedSpec:
    fraction: float
    kinds: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        return self.fraction > 0

    def describe(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "kinds": list(self.kinds)}


NO_MALFORMED = MalformedSpec(0.0, MALFORMED_KINDS)


def malformed_spec(spec: Mapping[str, Any], config: Mapping[str, Any]) -> MalformedSpec:
    """The run's malformed-input setting: ``spec["malformed"]`` if the run spec has it,
    else ``config["workload"]["malformed"]``, else none. ConfigError names a bad key."""
    if spec.get("malformed") is not None:
        raw, where = spec["malformed"], "spec key malformed"
    else:
        raw = (config.get("workload") or {}).get("malformed")
        where = "config key workload.malformed"
    if raw is None:
        return NO_MALFORMED
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with fraction and kinds")
    fraction = raw.get("fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ConfigError(f"{where}.fraction: must be a number in [0, 1]")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ConfigError(f"{where}.fraction: must be within [0, 1], got {fraction!r}")
    kinds = raw.get("kinds", list(MALFORMED_KINDS))
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise ConfigError(f"{where}.kinds: expected a non-empty list of {MALFORMED_KINDS}")
    unknown = [k for k in kinds if k not in MALFORMED_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ConfigError(
            f"{where}.kinds: unknown or repeated kinds {unknown or list(kinds)}; "
            f"expected distinct ones of {MALFORMED_KINDS}"
        )
    return MalformedSpec(float(fraction), tuple(kinds))


@dataclass
class BadRecords:
    """The bad records of one batch, in the order they are sent.

    ``kind`` indexes MALFORMED_KINDS. ``templates`` are the records as dicts (the event
    with its defect); ``insertion_time_ms`` is filled in when they are encoded, because
    the hand-off time is known only then. ``cut`` is, for ``not_json``, where in (0, 1)
    of the encoded record it is cut."""

    kind: np.ndarray
    window_start_ms: np.ndarray  # event-time window of the event each record replaced
    templates: list[dict[str, Any]]
    cut: list[float | None]

    def __len__(self) -> int:
        return len(self.templates)

    def tail(self, start: int) -> BadRecords:
        return BadRecords(
            self.kind[start:], self.window_start_ms[start:], self.templates[start:],
            self.cut[start:],
        )

    def head(self, stop: int) -> BadRecords:
        return BadRecords(
            self.kind[:stop], self.window_start_ms[:stop], self.templates[:stop],
            self.cut[:stop],
        )

    def encode(self, insertion_ms: int) -> list[bytes]:
        out = []
        for template, cut in zip(self.templates, self.cut, strict=True):
            record = dict(template)
            if "insertion_time_ms" in record:
                record["insertion_time_ms"] = int(insertion_ms)
            line = json.dumps(record, separators=(",", ":")).encode()
            if cut is not None:
                line = line[: 1 + int(cut * (len(line) - 2))]
            out.append(line)
        return out


def draw_bad_records(
    rng: np.random.Generator,
    cols: EventColumns,
    factory: EventFactory,
    spec: MalformedSpec,
    due_ns: int,
) -> tuple[EventColumns, BadRecords | None]:
    """Replace each event of ``cols`` with probability ``spec.fraction`` by a bad record.

    Returns the remaining valid events and the bad records (None when there are none)."""
    n = len(cols)
    if not spec.enabled or n == 0:
        return cols, None
    bad = rng.random(n) < spec.fraction
    k = int(bad.sum())
    if k == 0:
        return cols, None
    picked = np.flatnonzero(bad)
    kind_ids = np.array([MALFORMED_KINDS.index(x) for x in spec.kinds], dtype=np.int64)
    kinds = kind_ids[rng.integers(0, len(kind_ids), size=k)]
    templates: list[dict[str, Any]] = []
    cuts: list[float | None] = []
    for i, kind in zip(picked.tolist(), kinds.tolist(), strict=True):
        event = factory.event_dict(cols, i)
        cut = None
        name = MALFORMED_KINDS[kind]
        if name == "not_json":
            cut = float(rng.random())
        elif name == "missing_field":
            del event[EVENT_FIELDS[int(rng.integers(0, len(EVENT_FIELDS)))]]
        elif name == "unknown_ad":
            while True:
                ad = str(uuid.UUID(bytes=rng.bytes(16), version=4))
                if ad not in factory.catalog.campaign_of_ad:
                    break
            event["ad_id"] = ad
        else:  # absurd_timestamp
            variant = int(rng.integers(0, 3))
            event["event_time_ns"] = (0, -int(due_ns), int(due_ns) + _NS_PER_YEAR)[variant]
        templates.append(event)
        cuts.append(cut)
    windows = (cols.event_time_ns[picked] // 1_000_000) // WINDOW_MS * WINDOW_MS
    return cols.select(~bad), BadRecords(kinds, windows, templates, cuts)


# (kind, window_start_ms) -> count
WindowCounts = dict[tuple[str, int], int]


class MalformedRecorder:
    """Exact counts per kind and window of the bad records handed to the sink."""

    def __init__(self) -> None:
        self.counts: WindowCounts = {}

    def add(self, bad: BadRecords) -> None:
        for kind, window in zip(bad.kind.tolist(), bad.window_start_ms.tolist(), strict=True):
            key = (MALFORMED_KINDS[kind], int(window))
            self.counts[key] = self.counts.get(key, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_kind(self) -> dict[str, int]:
        return by_kind(self.counts)

    def write_csv(self, path: str | Path) -> None:
        write_malformed_csv(path, self.counts)


def by_kind(counts: WindowCounts) -> dict[str, int]:
    """Totals per kind (every kind, zero when not injected)."""
    out = {kind: 0 for kind in MALFORMED_KINDS}
    for (kind, _), count in counts.items():
        out[kind] += count
    return out


def write_malformed_csv(path: str | Path, counts: WindowCounts) -> None:
    """Rows kind, reason, window_start_ms, count (sorted; no row for a zero count)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MALFORMED_COLUMNS)
    for (kind, window), count in sorted(
        counts.items(), key=lambda item: (MALFORMED_KINDS.index(item[0][0]), item[0][1])
    ):
        if count:
            writer.writerow((kind, REASON_OF_KIND[kind], window, int(count)))
    write_text_atomic(path, buf.getvalue())


def read_malformed_windows(path: str | Path) -> WindowCounts:
    """Counts per (kind, window) from a malformed.csv; a missing file means none."""
    counts: WindowCounts = {}
    path = Path(path)
    if not path.exists():
        return counts
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MALFORMED_COLUMNS:
            raise ValueError(f"{path}: expected columns {list(MALFORMED_COLUMNS)}")
        for row in reader:
            if row["kind"] not in MALFORMED_KINDS:
                raise ValueError(f"{path}: unknown kind {row['kind']!r}")
            key = (row["kind"], int(row["window_start_ms"]))
            counts[key] = counts.get(key, 0) + int(row["count"])
    return counts


def read_malformed_csv(path: str | Path) -> dict[str, int]:
    """Counts per kind (every kind) from a malformed.csv; a missing file means none."""
    return by_kind(read_malformed_windows(path))


def merge_malformed_files(paths: Iterable[str | Path], out: str | Path) -> dict[str, int]:
    """Sum per-process malformed.csv files into ``out``; returns the counts per kind."""
    total: WindowCounts = {}
    for path in paths:
        for key, count in read_malformed_windows(path).items():
            total[key] = total.get(key, 0) + count
    write_malformed_csv(out, total)
    return by_kind(total)
