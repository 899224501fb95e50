"""The open-loop YSB workload: arrival processes, events, exact truth, sinks, generator.

Entry points: ``launch_generators`` / ``GeneratorGroup`` (separate producer processes),
``EventSource`` + ``run_open_loop`` + ``TruthRecorder``/``RateRecorder`` (in-process use).
"""

from sdsbench.workload.arrivals import ARRIVAL_PROCESSES, ArrivalSpec, validate_arrival
from sdsbench.workload.events import Batch, EventFactory
from sdsbench.workload.generator import (
    EventSource,
    GeneratorError,
    GeneratorGroup,
    launch_generators,
    run_open_loop,
    validate_spec,
)
from sdsbench.workload.truth import RateRecorder, TruthRecorder

__all__ = [
    "ARRIVAL_PROCESSES",
    "ArrivalSpec",
    "Batch",
    "EventFactory",
    "EventSource",
    "GeneratorError",
    "GeneratorGroup",
    "RateRecorder",
    "TruthRecorder",
    "launch_generators",
    "run_open_loop",
    "validate_arrival",
    "validate_spec",
]
