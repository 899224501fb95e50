"""The open-loop YSB workload: arrival processes, events, exact truth, sinks, generator,
malformed-input injection.

Entry points: ``launch_generators`` / ``GeneratorGroup`` (separate producer processes,
``sdsbench.workload.generator``), and for in-process use ``EventSource`` +
``run_open_loop`` with ``TruthRecorder``/``RateRecorder``.

Names are imported lazily: the producer processes run ``python -m
sdsbench.workload.generator``, which must not be imported by the package first.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARRIVAL_PROCESSES": "arrivals",
    "ArrivalSpec": "arrivals",
    "validate_arrival": "arrivals",
    "Batch": "events",
    "EventFactory": "events",
    "MALFORMED_KINDS": "malformed",
    "MalformedSpec": "malformed",
    "malformed_spec": "malformed",
    "RateRecorder": "truth",
    "TruthRecorder": "truth",
    "EventSource": "generator",
    "GeneratorError": "generator",
    "GeneratorGroup": "generator",
    "launch_generators": "generator",
    "run_open_loop": "generator",
    "validate_spec": "generator",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
