"""YSB events, drawn and encoded per batch (the generator's hot path).

A batch is drawn as numpy columns (indices into fixed pools), then encoded either as JSON
lines (for Kafka) or as tuples in ``contract.EVENT_FIELDS`` order (for A1's COPY).
JSON encoding avoids ``json.dumps``: every (user, page) pair and every (ad, ad_type,
event_type) triple is pre-encoded once as a bytes fragment, so one event is a single
``%``-format of two fragments, the event time and a per-batch suffix: 0.2-0.5 us/event
of CPU (scripts/bench_generator.py prints it as "encode JSON"). In a one-off comparison
on this machine an f-string per event cost ~1.6 us and a fully vectorised numpy encoder
(byte matrix + one slice per event) ~1 us, so neither replaced it.

User and page ids come from seeded pools (YSB uses 100 of each); ads come from the
shared campaign mapping (``contract.ad_catalog``); ad types are uniform over
``contract.AD_TYPES`` (as in YSB); event types follow ``workload.event_mix``.

Disorder: each event is independently chosen with probability ``disorder.fraction`` to
carry an event time earlier than its scheduled send time by a delay drawn from
uniform(0, max_delay_ms] or an exponential(mean_delay_ms) truncated to (0, max_delay_ms].
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from sdsbench.config import ConfigError
from sdsbench.contract import AD_TYPES, EVENT_TYPES, AdCatalog, ad_catalog

if TYPE_CHECKING:
    from sdsbench.workload.malformed import BadRecords

USER_POOL_SIZE = 100
PAGE_POOL_SIZE = 100
_NS_PER_MS = 1_000_000
_U53 = 1 << 53  # resolution of the integer draw behind the event-type mix


@dataclass(frozen=True)
class Disorder:
    fraction: float
    distribution: str  # uniform | exponential
    mean_delay_ms: float
    max_delay_ms: int

    @classmethod
    def from_workload(cls, workload: Mapping[str, Any]) -> Disorder:
        d = workload.get("disorder")
        if not isinstance(d, Mapping):
            raise ConfigError("config key workload.disorder: missing")
        for key in ("fraction", "distribution", "mean_delay_ms", "max_delay_ms"):
            if key not in d:
                raise ConfigError(f"config key workload.disorder.{key}: missing")
        if d["distribution"] not in ("uniform", "exponential"):
            raise ConfigError(
                f"config key workload.disorder.distribution: unknown {d['distribution']!r}"
            )
        fraction = float(d["fraction"])
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError("config key workload.disorder.fraction: must be within [0, 1]")
        if fraction > 0 and int(d["max_delay_ms"]) <= 0:
            raise ConfigError(
                "config key workload.disorder.max_delay_ms: must be > 0 when fraction > 0"
            )
        if float(d["mean_delay_ms"]) <= 0:
            raise ConfigError("config key workload.disorder.mean_delay_ms: must be > 0")
        return cls(fraction, d["distribution"], float(d["mean_delay_ms"]), int(d["max_delay_ms"]))

    def draw_delays_ns(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n delays in ns, each within (0, max_delay_ms]."""
        max_ns = self.max_delay_ms * _NS_PER_MS
        if self.distribution == "uniform":
            # integers draws [0, max_ns); max_ns - x lies in (0, max_ns].
            return max_ns - rng.integers(0, max_ns, size=n, dtype=np.int64)
        # Exponential truncated at max by inverting its conditional CDF (no rejection).
        mean_ms = self.mean_delay_ms
        mass = -math.expm1(-self.max_delay_ms / mean_ms)
        delay_ms = -mean_ms * np.log1p(-rng.random(n) * mass)
        return np.clip(np.ceil(delay_ms * _NS_PER_MS), 1, max_ns).astype(np.int64)


def event_mix_thresholds(mix: Mapping[str, float]) -> np.ndarray:
    """Cumulative integer thresholds for EVENT_TYPES; a zero weight is never drawn."""
    for name in EVENT_TYPES:
        if name not in mix:
            raise ConfigError(f"config key workload.event_mix.{name}: missing")
        if float(mix[name]) < 0:
            raise ConfigError(f"config key workload.event_mix.{name}: must be >= 0")
    weights = np.array([float(mix[name]) for name in EVENT_TYPES])
    if weights.sum() <= 0:
        raise ConfigError("config key workload.event_mix: weights must not all be zero")
    cumulative = np.round(np.cumsum(weights) / weights.sum() * _U53).astype(np.int64)
    cumulative[-1] = _U53
    return cumulative


def id_pool(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct random (version 4) UUID strings drawn from rng."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        value = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        if value not in seen:
            seen.add(value)
            ids.append(value)
    return ids


@dataclass
class EventColumns:
    """One batch of events as index columns (all arrays have the same length)."""

    user_page: np.ndarray  # user index * PAGE_POOL_SIZE + page index
    ad: np.ndarray  # index into the catalog's ad_ids
    ad_type: np.ndarray  # index into AD_TYPES
    event_type: np.ndarray  # index into EVENT_TYPES
    event_time_ns: np.ndarray  # int64
    delayed: np.ndarray  # bool: event time earlier than the scheduled send time

    def __len__(self) -> int:
        return len(self.event_time_ns)

    def tail(self, start: int) -> EventColumns:
        """The events from index ``start`` on (views, no copies)."""
        return self._slice(slice(start, None))

    def head(self, stop: int) -> EventColumns:
        """The first ``stop`` events (views, no copies)."""
        return self._slice(slice(None, stop))

    def select(self, mask: np.ndarray) -> EventColumns:
        """The events where ``mask`` is true (copies)."""
        return self._slice(mask)

    def _slice(self, s: slice | np.ndarray) -> EventColumns:
        return EventColumns(
            self.user_page[s],
            self.ad[s],
            self.ad_type[s],
            self.event_type[s],
            self.event_time_ns[s],
            self.delayed[s],
        )


class EventFactory:
    """Draws and encodes YSB events for one run. The pools depend only on ``pool_seed``,
    so every producer process of a run uses the same user and page ids."""

    def __init__(self, workload: Mapping[str, Any], pool_seed: int) -> None:
        for key in ("campaigns", "ads_per_campaign", "event_mix"):
            if key not in workload:
                raise ConfigError(f"config key workload.{key}: missing")
        self.catalog: AdCatalog = ad_catalog(
            int(workload["campaigns"]), int(workload["ads_per_campaign"])
        )
        self.ads_per_campaign = int(workload["ads_per_campaign"])
        self.disorder = Disorder.from_workload(workload)
        self.mix_thresholds = event_mix_thresholds(workload["event_mix"])
        pool_rng = np.random.default_rng(pool_seed)
        self.user_ids = id_pool(pool_rng, USER_POOL_SIZE)
        self.page_ids = id_pool(pool_rng, PAGE_POOL_SIZE)
        n_ads = self.catalog.n_ads
        # Pre-encoded fragments (object arrays so fancy indexing picks bytes directly).
        self._user_page_json = np.array(
            [
                f'{{"user_id":"{u}","page_id":"{p}","ad_id":"'.encode()
                for u in self.user_ids
                for p in self.page_ids
            ],
            dtype=object,
        )
        self._ad_json = np.array(
            [
                f'{ad}","ad_type":"{t}","event_type":"{e}","event_time_ns":'.encode()
                for ad in self.catalog.ad_ids
                for t in AD_TYPES
                for e in EVENT_TYPES
            ],
            dtype=object,
        )
        self._user_str = np.array(self.user_ids, dtype=object)
        self._page_str = np.array(self.page_ids, dtype=object)
        self._ad_str = np.array(self.catalog.ad_ids, dtype=object)
        self._ad_type_str = np.array(AD_TYPES, dtype=object)
        self._event_type_str = np.array(EVENT_TYPES, dtype=object)
        self._n_ads = n_ads

    # ------------------------------------------------------------------ drawing
    def draw(self, rng: np.random.Generator, n: int, due_ns: int) -> EventColumns:
        """n events scheduled for ``due_ns`` (their on-time event time)."""
        user_page = rng.integers(0, USER_POOL_SIZE * PAGE_POOL_SIZE, size=n, dtype=np.int64)
        ad = rng.integers(0, self._n_ads, size=n, dtype=np.int64)
        ad_type = rng.integers(0, len(AD_TYPES), size=n, dtype=np.int64)
        event_type = np.searchsorted(
            self.mix_thresholds, rng.integers(0, _U53, size=n, dtype=np.int64), side="right"
        )
        event_time_ns = np.full(n, due_ns, dtype=np.int64)
        if self.disorder.fraction > 0:
            delayed = rng.random(n) < self.disorder.fraction
            k = int(delayed.sum())
            if k:
                event_time_ns[delayed] -= self.disorder.draw_delays_ns(rng, k)
        else:
            delayed = np.zeros(n, dtype=bool)
        return EventColumns(user_page, ad, ad_type, event_type, event_time_ns, delayed)

    def campaign_of(self, ad: np.ndarray) -> np.ndarray:
        """Campaign ids of ad indices (the contract maps ad i to i // ads_per_campaign)."""
        return ad // self.ads_per_campaign

    # ----------------------------------------------------------------- encoding
    def json_lines(self, cols: EventColumns, insertion_ms: int) -> list[bytes]:
        """The events as compact JSON objects with exactly the contract's fields."""
        fmt = b'%s%s%d,"insertion_time_ms":' + str(int(insertion_ms)).encode() + b"}"
        mid = (cols.ad * len(AD_TYPES) + cols.ad_type) * len(EVENT_TYPES) + cols.event_type
        return [
            fmt % parts
            for parts in zip(
                self._user_page_json[cols.user_page].tolist(),
                self._ad_json[mid].tolist(),
                cols.event_time_ns.tolist(),
                strict=True,
            )
        ]

    def event_dict(self, cols: EventColumns, i: int) -> dict[str, Any]:
        """Event ``i`` of ``cols`` as a dict in ``contract.EVENT_FIELDS`` order, with
        ``insertion_time_ms`` 0 (the caller sets it at hand-off; malformed input)."""
        up = int(cols.user_page[i])
        return {
            "user_id": self.user_ids[up // PAGE_POOL_SIZE],
            "page_id": self.page_ids[up % PAGE_POOL_SIZE],
            "ad_id": self.catalog.ad_ids[int(cols.ad[i])],
            "ad_type": AD_TYPES[int(cols.ad_type[i])],
            "event_type": EVENT_TYPES[int(cols.event_type[i])],
            "event_time_ns": int(cols.event_time_ns[i]),
            "insertion_time_ms": 0,
        }

    def rows(self, cols: EventColumns, insertion_ms: int) -> list[tuple]:
        """The events as tuples in ``contract.EVENT_FIELDS`` order."""
        return list(
            zip(
                self._user_str[cols.user_page // PAGE_POOL_SIZE].tolist(),
                self._page_str[cols.user_page % PAGE_POOL_SIZE].tolist(),
                self._ad_str[cols.ad].tolist(),
                self._ad_type_str[cols.ad_type].tolist(),
                self._event_type_str[cols.event_type].tolist(),
                cols.event_time_ns.tolist(),
                repeat(int(insertion_ms), len(cols)),
                strict=True,
            )
        )


@dataclass
class Batch:
    """The records of one scheduling tick, as handed to a sink.

    ``due_ns`` is the scheduled send time (wall clock, ns since the epoch) and the
    on-time events' event time; ``columns`` holds the valid events; ``campaign`` their
    campaign ids. ``bad`` (malformed-input runs only) holds bad records, sent after the
    valid ones (within one tick the order carries no meaning). ``len`` counts both: a
    sink accepts a prefix of valid events, then bad records.
    """

    tick: int
    due_ns: int
    columns: EventColumns
    factory: EventFactory
    bad: BadRecords | None = None

    def __len__(self) -> int:
        return len(self.columns) + (len(self.bad) if self.bad is not None else 0)

    @property
    def n_valid(self) -> int:
        return len(self.columns)

    def bad_lines(self, insertion_ms: int) -> list[bytes]:
        """The bad records as sent (bytes; JSON or not)."""
        return self.bad.encode(insertion_ms) if self.bad is not None else []

    @property
    def campaign(self) -> np.ndarray:
        return self.factory.campaign_of(self.columns.ad)

    def rows(self, insertion_ms: int) -> list[tuple]:
        """The valid events as tuples (bad records: ``bad_lines``)."""
        return self.factory.rows(self.columns, insertion_ms)

    def json_lines(self, insertion_ms: int) -> list[bytes]:
        """Every record of the batch: the valid events' JSON, then the bad records."""
        lines = self.factory.json_lines(self.columns, insertion_ms)
        if self.bad is not None:
            lines += self.bad.encode(insertion_ms)
        return lines

    def tail(self, start: int) -> Batch:
        """The not yet accepted rest of the batch (after back-pressure)."""
        n_valid = len(self.columns)
        if start <= n_valid:
            return Batch(self.tick, self.due_ns, self.columns.tail(start), self.factory, self.bad)
        assert self.bad is not None
        return Batch(
            self.tick, self.due_ns, self.columns.tail(n_valid), self.factory,
            self.bad.tail(start - n_valid),
        )
