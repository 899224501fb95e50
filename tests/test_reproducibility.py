"""The reproducibility check (sdsbench.analysis.reproducibility, scripts/compare_results.py)
on fabricated headline tables: each pair has a known verdict per key."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sdsbench.analysis import reproducibility as rep
from sdsbench.paths import REPO_ROOT

REPO = REPO_ROOT
SCRIPT = REPO / "scripts" / "compare_results.py"
HEADER = ("key", "metric", "subject", "unit", "median", "lo", "hi", "n_repetitions",
          "firings", "interval_lo", "interval_hi", "lower_bound", "values")


def t_h(search: str, values: list[float], interval: tuple[float, float | None],
        lower_bound: bool = False) -> dict:
    s = sorted(values)
    return {"key": f"t_h/{search}", "metric": "t_h_eps", "subject": search, "unit": "ev/s",
            "median": s[(len(s) - 1) // 2], "lo": s[0], "hi": s[-1],
            "n_repetitions": len(s), "firings": math.nan, "interval_lo": interval[0],
            "interval_hi": math.nan if interval[1] is None else interval[1],
            "lower_bound": lower_bound, "values": ";".join(f"{v:g}" for v in values)}


def p95(base: str, values: list[float], firings: int = 120) -> dict:
    clean = [v for v in values if not math.isnan(v)]
    return {"key": f"p95_above_delay/{base}", "metric": "latency_above_delay_ms_p95",
            "subject": base, "unit": "ms",
            "median": float(pd.Series(clean).median()) if clean else math.nan,
            "lo": min(clean) if clean else math.nan, "hi": max(clean) if clean else math.nan,
            "n_repetitions": len(clean), "firings": firings if clean else math.nan,
            "interval_lo": math.nan, "interval_hi": math.nan, "lower_bound": False,
            "values": ";".join(f"{v:g}" for v in clean)}


def write(path: Path, rows: list[dict], drop: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [c for c in HEADER if c not in drop]
    pd.DataFrame(rows, columns=list(HEADER))[columns].to_csv(path, index=False)
    return path


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def verdicts(report: pd.DataFrame) -> dict[str, str]:
    return dict(zip(report["key"], report["verdict"], strict=True))


# ---------------------------------------------------------------- the rule


def test_overlapping_spreads_agree(tmp_path):
    a = write(tmp_path / "a" / "headline.csv", [
        p95("flink-spp-r20000", [110.0, 120.0, 135.0]),
        t_h("flink-spp", [40000, 45000, 50000], (45000, 50000)),
    ])
    b = write(tmp_path / "b" / "headline.csv", [
        p95("flink-spp-r20000", [130.0, 150.0, 160.0]),   # [130,160] meets [110,135]
        t_h("flink-spp", [50000, 55000, 60000], (55000, 60000)),  # touches at 50000
    ])
    report = rep.compare_headlines(rep.read_headline(a), rep.read_headline(b))
    assert verdicts(report) == {"p95_above_delay/flink-spp-r20000": "agree",
                                "t_h/flink-spp": "agree"}
    assert set(report["note"]) == {"spreads overlap"}
    assert rep.exit_code(report) == 0
    assert rep.summary_line(report) == "2 of 2 headline numbers agree"


def test_disagreement_is_flagged_and_tolerance_widens(tmp_path):
    a = [p95("a3-spp-r20000", [100.0, 110.0, 120.0])]
    b = [p95("a3-spp-r20000", [130.0, 140.0, 150.0])]
    report = rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(b))
    row = report.iloc[0]
    assert row["verdict"] == "disagree"
    # 120*(1+t) >= 130*(1-t)  <=>  t >= 10/250
    assert row["tolerance_needed"] == pytest.approx(0.04)
    assert "0.04" in row["note"]
    assert rep.exit_code(report) == 1
    assert rep.summary_line(report) == "0 of 1 headline numbers agree"
    # within a 5 % tolerance they meet; within 3 % they do not
    assert rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(b), 0.05).iloc[0]["verdict"] \
        == "agree"
    assert rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(b), 0.03).iloc[0]["verdict"] \
        == "disagree"


def test_t_h_intervals_overlapping_agree(tmp_path):
    # spreads apart ([40k, 42k] vs [48k, 50k]), intervals [40k, 50k) and [48k, 60k) overlap
    a = [t_h("spark-spp", [40000, 41000, 42000], (41000, 50000))]
    b = [t_h("spark-spp", [48000, 49000, 50000], (49000, 60000))]
    row = rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(b)).iloc[0]
    assert row["verdict"] == "agree"
    assert row["note"] == "t_h intervals overlap"
    # half-open: [41k, 48k) and [48k, 60k) only touch: no overlap, spreads apart
    a2 = [t_h("spark-spp", [40000, 41000, 42000], (41000, 48000))]
    row = rep.compare_headlines(pd.DataFrame(a2), pd.DataFrame(b)).iloc[0]
    assert row["verdict"] == "disagree"
    assert "t_h intervals apart" in row["note"]
    # the interval rule is for t_h only: the same numbers as a latency disagree
    lat_a = [dict(p95("x", [1.0, 2.0]), interval_lo=1.0, interval_hi=10.0)]
    lat_b = [dict(p95("x", [5.0, 6.0]), interval_lo=2.0, interval_hi=10.0)]
    assert rep.compare_headlines(pd.DataFrame(lat_a), pd.DataFrame(lat_b)).iloc[0][
        "verdict"] == "disagree"


def test_lower_bound_t_h_has_no_upper_end():
    a = [t_h("a1-spp", [80000, 90000, 100000], (100000, None), lower_bound=True)]
    above = [t_h("a1-spp", [150000, 160000, 170000], (160000, 200000))]
    below = [t_h("a1-spp", [20000, 30000, 40000], (30000, 35000))]
    assert rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(above)).iloc[0][
        "verdict"] == "agree"
    assert rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(below)).iloc[0][
        "verdict"] == "disagree"
    assert rep.interval(a[0]) == (100000, math.inf)


def test_missing_keys_and_not_measured(tmp_path):
    a = [p95("shared", [10.0, 12.0]), p95("only-a", [1.0]), p95("nan-in-b", [5.0])]
    b = [p95("shared", [11.0, 13.0]), p95("nan-in-b", [math.nan]), p95("only-b", [2.0])]
    report = rep.compare_headlines(
        rep.read_headline(write(tmp_path / "a.csv", a)),
        rep.read_headline(write(tmp_path / "b.csv", b)))
    assert verdicts(report) == {
        "p95_above_delay/shared": "agree", "p95_above_delay/only-a": "only in A",
        "p95_above_delay/nan-in-b": "not measured", "p95_above_delay/only-b": "only in B"}
    assert report.set_index("key").at["p95_above_delay/nan-in-b", "note"] \
        == "not measured in B"
    assert rep.exit_code(report) == 0  # neither missing keys nor NaN are disagreements
    assert rep.summary_line(report) == "1 of 4 headline numbers agree"
    text = rep.format_text(report)
    assert "only in A" in text and "only in B" in text and "not measured" in text
    assert text.rstrip().endswith("1 of 4 headline numbers agree")
    md = rep.format_markdown(report)
    assert "| p95_above_delay/only-b |" in md and "Agreement rule" in md


def test_unit_mismatch_disagrees():
    a = [p95("x", [10.0])]
    b = [dict(p95("x", [10.0]), unit="s")]
    row = rep.compare_headlines(pd.DataFrame(a), pd.DataFrame(b)).iloc[0]
    assert row["verdict"] == "disagree" and "unit differs" in row["note"]


def test_missing_column_is_a_clear_error(tmp_path):
    path = write(tmp_path / "bad.csv", [p95("x", [1.0])], drop=("hi", "interval_lo"))
    with pytest.raises(rep.HeadlineError, match=r"missing columns 'hi', 'interval_lo'"):
        rep.read_headline(path)


def test_bad_input_errors(tmp_path):
    with pytest.raises(rep.HeadlineError, match="no such file"):
        rep.read_headline(tmp_path / "absent.csv")
    (tmp_path / "empty_summary").mkdir()
    with pytest.raises(rep.HeadlineError, match="summary directory has no headline.csv"):
        rep.read_headline(tmp_path / "empty_summary")
    dup = write(tmp_path / "dup.csv", [p95("x", [1.0]), p95("x", [2.0])])
    with pytest.raises(rep.HeadlineError, match="duplicate key"):
        rep.read_headline(dup)
    bad = write(tmp_path / "badnum.csv", [p95("x", [1.0]), dict(p95("y", [2.0]), lo="oops")])
    with pytest.raises(rep.HeadlineError, match="column 'lo' .* not a number: 'oops'"):
        rep.read_headline(bad)


# ---------------------------------------------------------------- the command


def test_cli_agreement_directory_argument_and_reports(tmp_path):
    rows = [t_h("flink-spp", [40000, 45000, 50000], (45000, 50000)),
            p95("flink-spp-r20000", [110.0, 120.0, 135.0])]
    write(tmp_path / "a" / "summary" / "headline.csv", rows)
    b = write(tmp_path / "b.csv", rows)
    out, md = tmp_path / "r" / "report.csv", tmp_path / "r" / "report.md"
    proc = run_cli(tmp_path / "a" / "summary", b, "--out", out, "--md", md)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "2 of 2 headline numbers agree"
    assert any("Agreement rule" in line for line in lines)
    assert any(line.startswith("t_h/flink-spp") and "45000 [40000, 50000] n=3" in line
               for line in lines)
    report = pd.read_csv(out)
    assert list(report["verdict"]) == ["agree", "agree"]
    assert "2 of 2 headline numbers agree" in md.read_text()


def test_cli_disagreement_exit_1_and_tolerance(tmp_path):
    a = write(tmp_path / "a.csv", [p95("a3-spp-r20000", [100.0, 110.0, 120.0])])
    b = write(tmp_path / "b.csv", [p95("a3-spp-r20000", [130.0, 140.0, 150.0])])
    proc = run_cli(a, b)
    assert proc.returncode == 1, proc.stderr
    assert "disagree" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "0 of 1 headline numbers agree"
    proc = run_cli(a, b, "--tolerance", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "1 of 1 headline numbers agree"


def test_cli_bad_input_exit_2(tmp_path):
    good = write(tmp_path / "good.csv", [p95("x", [1.0])])
    bad = write(tmp_path / "bad.csv", [p95("x", [1.0])], drop=("median",))
    proc = run_cli(good, bad)
    assert proc.returncode == 2
    assert "missing column 'median'" in proc.stderr and str(bad) in proc.stderr
    proc = run_cli(good, tmp_path / "nowhere" / "headline.csv")
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "nowhere" in proc.stderr
    assert run_cli(good, good, "--tolerance", "-1").returncode == 2


def test_a_single_repetition_has_no_spread_to_judge_by():
    from sdsbench.analysis.reproducibility import NO_SPREAD, compare_pair

    one = {"key": "p95/x", "metric": "m", "unit": "ms", "median": 949.0, "lo": 949.0,
           "hi": 949.0, "n_repetitions": 1, "interval_lo": math.nan, "interval_hi": math.nan}
    other = dict(one, median=997.0, lo=997.0, hi=997.0)
    result = compare_pair(one, other)
    assert result["verdict"] == NO_SPREAD and "one repetition in A and B" in result["note"]
    assert compare_pair(one, dict(one))["verdict"] == "agree"
