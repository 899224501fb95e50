"""Malformed-input runs: were the injected bad records set aside, and are the valid
events' results still right?

The generator records exactly how many bad records of each kind it sent
(``generator/malformed.csv``, see ``sdsbench.workload.malformed``); every pipeline writes
the records it set aside per contract reject reason (``rejects.csv``: reason, count).
Each kind maps to one reason (``REASON_OF_KIND``), so the two compare reason by reason.
The valid events' correctness is the run summary's own (``sdsbench.analysis.summarize``
and ``.oracle``: truth.csv holds the valid events only), not a second implementation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sdsbench.analysis.rundata import RunData, RunDataError, load_run
from sdsbench.analysis.summarize import summarize_run
from sdsbench.contract import REJECT_REASONS
from sdsbench.workload.malformed import MALFORMED_KINDS, REASON_OF_KIND, read_malformed_csv

# Correctness keys of the run summary copied into ``valid_check``.
VALID_CHECK_KEYS = (
    "correctness_source", "correct", "correct_where_not_dropped", "expected_windows",
    "evaluable_windows", "exact_windows", "late_dropped_windows", "count_error_windows",
    "missing_windows", "extra_windows", "truth_events", "deficit_events", "excess_events",
    "dropped_events_reported", "unexplained_deficit_events",
)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _set_aside(run: RunData) -> dict[str, int]:
    counts = {reason: 0 for reason in REJECT_REASONS}
    frame = run.rejects
    if frame is None or not {"reason", "count"} <= set(frame.columns):
        raise RunDataError(f"run {run.path}: rejects.csv is missing or lacks reason, count")
    for reason, count in zip(frame["reason"], frame["count"], strict=True):
        counts[str(reason)] = counts.get(str(reason), 0) + int(count)
    return counts


def check_malformed(run_dir: str | Path) -> dict[str, Any]:
    """Compare the bad records a run's generator injected with what its pipeline set aside.

    Raises RunDataError for an incomplete run (no COMPLETE marker: the pipeline did not
    keep running to the end) or a run without rejects.csv. Returned keys (stable: other
    analyses and tables use them):

    - ``run_id``, ``pipeline``: of the run;
    - ``malformed``: the run's setting ``{"fraction": float, "kinds": [str]}``;
    - ``events_sent``: records the generator sent (valid + malformed: both are load);
      ``events_in_truth``: valid events sent (truth.csv);
    - ``injected``: ``{kind: count}`` for every kind of ``MALFORMED_KINDS`` (generator);
    - ``injected_by_reason``: the same counts keyed by the contract reject reason each
      kind must be set aside with, for every reason of ``contract.REJECT_REASONS``;
    - ``set_aside``: ``{reason: count}`` the pipeline set aside (rejects.csv), every
      reason of ``contract.REJECT_REASONS`` (plus any other reason the pipeline wrote);
    - ``injected_total``, ``set_aside_total``: the sums;
    - ``difference_by_reason``: ``set_aside - injected`` for the reasons where they differ
      (empty when they agree);
    - ``all_set_aside``: True when, for every reason, the pipeline set aside exactly as
      many records as were injected with that reason (nothing lost, nothing valid set
      aside, no record under another reason);
    - ``valid_correct``: the valid events' results match truth (``correct`` of the run
      summary: every evaluable window exact, nothing extra);
      ``valid_correct_where_not_dropped``: the same, except for windows that differ by
      exactly the late events the pipeline reports dropping (disorder, not bad input);
    - ``valid_check``: the summary's correctness fields (``VALID_CHECK_KEYS``; a count
      the pipeline does not report is None);
    - ``passed``: ``all_set_aside and valid_correct_where_not_dropped``.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)  # raises unless the run completed
    generator = run.generator
    injected = read_malformed_csv(run_dir / "generator" / "malformed.csv")
    by_reason = {reason: 0 for reason in REJECT_REASONS}
    for kind in MALFORMED_KINDS:
        by_reason[REASON_OF_KIND[kind]] += injected[kind]
    set_aside = _set_aside(run)
    difference = {
        reason: set_aside.get(reason, 0) - by_reason.get(reason, 0)
        for reason in sorted(set(by_reason) | set(set_aside))
        if set_aside.get(reason, 0) != by_reason.get(reason, 0)
    }
    config = run.provenance.get("config")
    if config is None:
        raise RunDataError(f"run {run_dir}: provenance.json has no config")
    summary, _, _ = summarize_run(run_dir, config)
    # NaN (a count the pipeline does not report) becomes None: the dict stays JSON.
    valid_check = {key: _none_if_nan(summary.get(key)) for key in VALID_CHECK_KEYS}
    setting = generator.get("malformed") or run.spec.get("malformed") or {}
    all_set_aside = not difference
    valid_correct = bool(summary.get("correct"))
    where_not_dropped = bool(summary.get("correct_where_not_dropped"))
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "malformed": json.loads(json.dumps(setting)),
        "events_sent": int(generator.get("events_sent", 0)),
        "events_in_truth": int(generator.get("events_in_truth", 0)),
        "injected": injected,
        "injected_by_reason": by_reason,
        "set_aside": set_aside,
        "injected_total": sum(injected.values()),
        "set_aside_total": sum(set_aside.values()),
        "difference_by_reason": difference,
        "all_set_aside": all_set_aside,
        "valid_correct": valid_correct,
        "valid_correct_where_not_dropped": where_not_dropped,
        "valid_check": valid_check,
        "passed": all_set_aside and where_not_dropped,
    }
