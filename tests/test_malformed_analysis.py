"""check_malformed on fabricated run directories (TEST-ONLY runs, tests/synthetic_runs.py):
it finds a record not set aside, one set aside under the wrong reason, a valid-event
error, and treats Flink's unfired-tail unknown ads as unjudged, not as set aside."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import T0_MS, fabricate_run

from sdsbench.analysis.malformed import check_malformed
from sdsbench.analysis.rundata import RunDataError
from sdsbench.config import load_config
from sdsbench.contract import REJECT_REASONS, WINDOW_MS
from sdsbench.experiments import make_spec
from sdsbench.rundir import COMPLETE_MARKER
from sdsbench.workload.malformed import write_malformed_csv

FIRST_WINDOW = T0_MS // WINDOW_MS * WINDOW_MS


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config()


def fabricated(tmp_path: Path, config: dict, pipeline: str, injected: dict,
               set_aside: dict, **kwargs) -> Path:
    spec = make_spec(config, pipeline, "constant", 1000, duration_s=30)
    spec["malformed"] = {"fraction": 0.01, "kinds": sorted({k for k, _ in injected})}
    run = fabricate_run(tmp_path / pipeline, spec, config, **kwargs)
    write_malformed_csv(run / "generator" / "malformed.csv", injected)
    counts = {reason: set_aside.get(reason, 0) for reason in REJECT_REASONS}
    pd.DataFrame({"reason": list(counts), "count": list(counts.values())}).to_csv(
        run / "rejects.csv", index=False)
    return run


INJECTED = {("not_json", FIRST_WINDOW): 5, ("unknown_ad", FIRST_WINDOW): 3,
            ("unknown_ad", FIRST_WINDOW + WINDOW_MS): 2,
            ("absurd_timestamp", FIRST_WINDOW + WINDOW_MS): 4}


def test_exactly_the_injected_records_set_aside_passes(tmp_path, config) -> None:
    run = fabricated(tmp_path, config, "a1", INJECTED,
                     {"not_json": 5, "unknown_ad": 5, "absurd_timestamp": 4})
    report = check_malformed(run)
    assert report["injected"] == {"not_json": 5, "missing_field": 0, "unknown_ad": 5,
                                  "absurd_timestamp": 4}
    assert report["injected_total"] == report["set_aside_total"] == 14
    assert report["all_set_aside"] and report["set_aside_equals_injected"]
    assert report["difference_by_reason"] == {} and report["unjudged_after_horizon"] == {}
    assert report["valid_correct"] and report["passed"]
    assert report["horizon_ms"] is None  # A1: every window is queried


def test_a_lost_record_and_a_wrong_reason_fail(tmp_path, config) -> None:
    run = fabricated(tmp_path, config, "a1", INJECTED,
                     {"not_json": 4, "unknown_ad": 5, "absurd_timestamp": 3, "bad_type": 1})
    report = check_malformed(run)
    assert report["difference_by_reason"] == {"not_json": -1, "absurd_timestamp": -1,
                                              "bad_type": 1}
    assert not report["all_set_aside"] and not report["passed"]


def test_a_valid_event_error_fails_even_when_all_bad_records_are_set_aside(
    tmp_path, config
) -> None:
    run = fabricated(tmp_path, config, "flink", INJECTED,
                     {"not_json": 5, "unknown_ad": 5, "absurd_timestamp": 4}, drop_windows=1)
    report = check_malformed(run)
    assert report["all_set_aside"]
    assert not report["valid_correct"] and not report["passed"]
    assert report["valid_check"]["missing_windows"] == 1


def test_flink_unknown_ads_after_the_horizon_are_unjudged_not_set_aside(
    tmp_path, config
) -> None:
    late_window = FIRST_WINDOW + 4 * WINDOW_MS  # ends after the 30 s run: never fires
    injected = {**INJECTED, ("unknown_ad", late_window): 7, ("not_json", late_window): 1}
    set_aside = {"not_json": 6, "unknown_ad": 5, "absurd_timestamp": 4}
    report = check_malformed(fabricated(tmp_path, config, "flink", injected, set_aside))
    assert report["horizon_ms"] < late_window + WINDOW_MS
    assert report["unjudged_after_horizon"] == {"unknown_ad": 7}  # per-record reasons: none
    assert report["expected_set_aside"]["unknown_ad"] == 5
    assert report["all_set_aside"] and not report["set_aside_equals_injected"]
    # the same counts from a per-record pipeline: the 7 unknown ads were lost
    report = check_malformed(fabricated(tmp_path, config, "spark", injected, set_aside))
    assert report["difference_by_reason"] == {"unknown_ad": -7}
    assert not report["all_set_aside"]


def test_an_incomplete_run_is_an_error(tmp_path, config) -> None:
    run = fabricated(tmp_path, config, "a2", INJECTED, {})
    (run / COMPLETE_MARKER).unlink()
    with pytest.raises(RunDataError, match="not complete"):
        check_malformed(run)
