"""Malformed-input runs: were the injected bad records set aside, and are the valid
events' results still right?

The generator records exactly how many bad records of each kind it sent
(``generator/malformed.csv``, see ``sdsbench.workload.malformed``); every pipeline writes
the records it set aside per contract reject reason (``rejects.csv``: reason, count).
Each kind maps to one reason (``REASON_OF_KIND``), so the two compare reason by reason.
The valid events' correctness is the run summary's own (``sdsbench.analysis.summarize``
and ``.oracle``: truth.csv holds the valid events only), not a second implementation.

Window-decided reasons. Flink decides ``unknown_ad`` after its first aggregation, once
per (ad, window), when the window fires; Spark, A1-A3 decide every reason per record.
A window that never fires (after the run's fire horizon: Flink's watermark stops with its
input) is never judged, for valid events (the oracle's ``unfired_tail`` windows) and bad
records alike. So the set-aside count expected of such a reason counts only the records
whose window (of the event each replaced, ``generator/malformed.csv``) ends at or before
the horizon that the valid-event check uses; the others are reported as
``unjudged_after_horizon``, never hidden.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sdsbench.analysis.rundata import RunData, RunDataError, load_run
from sdsbench.analysis.summarize import summarize_run
from sdsbench.contract import REJECT_REASONS, WINDOW_MS
from sdsbench.workload.malformed import REASON_OF_KIND, by_kind, read_malformed_windows

# Reasons a pipeline decides only when a window fires (see the module docstring).
WINDOW_DECIDED_REASONS: dict[str, tuple[str, ...]] = {"flink": ("unknown_ad",)}

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
    - ``horizon_ms``: the run's fire horizon (the valid-event check's; None = no horizon);
    - ``unjudged_after_horizon``: ``{reason: count}`` of injected records with a
      window-decided reason (``WINDOW_DECIDED_REASONS``) whose window ends after the
      horizon: never fired, so never judged (empty for per-record pipelines);
    - ``expected_set_aside``: ``injected_by_reason`` minus ``unjudged_after_horizon``;
    - ``difference_by_reason``: ``set_aside - expected_set_aside`` for the reasons where
      they differ (empty when they agree);
    - ``all_set_aside``: True when, for every reason, the pipeline set aside exactly the
      expected number of records (nothing lost, nothing valid set aside, no record under
      another reason);
    - ``set_aside_equals_injected``: the same against ``injected_by_reason`` itself
      (False for a Flink run with unknown ads in its unfired tail windows);
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
    windows = read_malformed_windows(run_dir / "generator" / "malformed.csv")
    injected = by_kind(windows)
    config = run.provenance.get("config")
    if config is None:
        raise RunDataError(f"run {run_dir}: provenance.json has no config")
    summary, _, _ = summarize_run(run_dir, config)
    horizon_ms = float(summary.get("horizon_ms", math.inf))
    window_decided = WINDOW_DECIDED_REASONS.get(run.pipeline, ())
    by_reason = {reason: 0 for reason in REJECT_REASONS}
    unjudged: dict[str, int] = {}
    for (kind, window_start), count in windows.items():
        reason = REASON_OF_KIND[kind]
        by_reason[reason] += count
        if reason in window_decided and window_start + WINDOW_MS > horizon_ms:
            unjudged[reason] = unjudged.get(reason, 0) + count
    expected = {r: n - unjudged.get(r, 0) for r, n in by_reason.items()}
    set_aside = _set_aside(run)

    def differences(reference: dict[str, int]) -> dict[str, int]:
        return {
            reason: set_aside.get(reason, 0) - reference.get(reason, 0)
            for reason in sorted(set(reference) | set(set_aside))
            if set_aside.get(reason, 0) != reference.get(reason, 0)
        }

    difference = differences(expected)
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
        "horizon_ms": None if math.isinf(horizon_ms) else horizon_ms,
        "unjudged_after_horizon": unjudged,
        "expected_set_aside": expected,
        "difference_by_reason": difference,
        "all_set_aside": all_set_aside,
        "set_aside_equals_injected": not differences(by_reason),
        "valid_correct": valid_correct,
        "valid_correct_where_not_dropped": where_not_dropped,
        "valid_check": valid_check,
        "passed": all_set_aside and where_not_dropped,
    }
