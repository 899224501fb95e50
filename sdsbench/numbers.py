"""Reading numbers from summaries, where a missing value is None (JSON), NaN or absent."""

from __future__ import annotations

import math
from typing import Any


def as_number(value: Any) -> float:
    """``value`` as a float; NaN for None, NaN and anything that is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
