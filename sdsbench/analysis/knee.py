"""The knee of a throughput-vs-latency curve: the best trade-off operating point."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sdsbench.analysis.oracle import COMPLETE_AT

# A point counts for the knee only if at least this share of its steady-state window
# queries returned a complete answer (``at_query_complete_share``, sdsbench.analysis.oracle).
MIN_COMPLETE_SHARE = 0.95


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def knee_exclusions(
    throughput: Sequence[float | None],
    latency: Sequence[float | None],
    complete_share: Sequence[float | None] | None = None,
    min_complete_share: float = MIN_COMPLETE_SHARE,
) -> dict[int, str]:
    """Points the knee rule does not count, by index, each with the reason in words.

    Without ``complete_share`` only points lacking a positive throughput or latency are
    left out. With it, a point is also left out when its share of complete answers at
    query time is unknown or below ``min_complete_share``: a query over a window whose
    events have not arrived yet is fast and wrong, so its latency is no operating point.
    """
    if complete_share is not None and len(complete_share) != len(throughput):
        raise ValueError("complete_share needs one value per point")
    out: dict[int, str] = {}
    for i, (x, y) in enumerate(zip(throughput, latency, strict=True)):
        if _missing(x) or _missing(y) or not (x > 0 and y > 0):
            out[i] = "no measured throughput or query latency"
            continue
        if complete_share is None:
            continue
        share = complete_share[i]
        if _missing(share):
            out[i] = "completeness of its answers at query time not measured"
        elif share < min_complete_share:
            out[i] = (f"answers complete at query time in {100 * share:.0f} per cent of its "
                      f"steady-state windows, below {100 * min_complete_share:.0f} per cent")
    return out


def knee_index(
    throughput: Sequence[float | None],
    latency: Sequence[float | None],
    complete_share: Sequence[float | None] | None = None,
    min_complete_share: float = MIN_COMPLETE_SHARE,
) -> int | None:
    """The knee is the point of highest power, throughput / latency (Kleinrock's power):
    the most throughput per unit of latency. Points with a missing or non-positive latency
    or throughput are skipped; ties go to the higher throughput. When the share of complete
    answers at query time is given per point (``complete_share``: the share of steady-state
    window queries whose answer held at least ``oracle.COMPLETE_AT`` of the window's true events),
    points below ``min_complete_share`` (0.95), or without it, are skipped too: a query
    that ran before its window's events arrived is fast because it counted little, not
    because the system is. None if no point counts.
    """
    excluded = knee_exclusions(throughput, latency, complete_share, min_complete_share)
    best: int | None = None
    best_power = -math.inf
    for i, (x, y) in enumerate(zip(throughput, latency, strict=True)):
        if i in excluded:
            continue
        power = x / y
        if power > best_power or (power == best_power and best is not None
                                  and x > throughput[best]):
            best, best_power = i, power
    return best


KNEE_RULE = (
    "the knee is the run of highest power = achieved throughput / mean query latency "
    "(Kleinrock's power: the most throughput per unit of latency), among runs whose "
    f"window queries returned complete answers (at least {100 * COMPLETE_AT:g} per cent of "
    "the window's "
    f"events) in at least {100 * MIN_COMPLETE_SHARE:.0f} per cent of their steady-state "
    "windows; runs with less complete answers are not candidates"
)
