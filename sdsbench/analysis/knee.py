"""The knee of a throughput-vs-latency curve: the best trade-off operating point."""

from __future__ import annotations

import math
from collections.abc import Sequence


def knee_index(throughput: Sequence[float], latency: Sequence[float]) -> int | None:
    """The knee is the point of highest power, throughput / latency (Kleinrock's power):
    the most throughput per unit of latency. Points with a missing or non-positive latency
    or throughput are skipped; ties go to the higher throughput. None if no point counts.
    """
    best: int | None = None
    best_power = -math.inf
    for i, (x, y) in enumerate(zip(throughput, latency, strict=True)):
        if x is None or y is None or not (x > 0 and y > 0):
            continue
        if math.isnan(x) or math.isnan(y):
            continue
        power = x / y
        if power > best_power or (power == best_power and best is not None
                                  and x > throughput[best]):
            best, best_power = i, power
    return best


KNEE_RULE = (
    "the knee is the run of highest power = achieved throughput / mean query latency "
    "(Kleinrock's power: the most throughput per unit of latency)"
)
