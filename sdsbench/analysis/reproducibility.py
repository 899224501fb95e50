"""The reproducibility check: do two result sets give the same headline numbers?

The headline table (``data/<profile>/summary/headline.csv``, built by
``sdsbench.analysis.tables.headline_table``) has one row per number the paper compares:
its ``key``, ``metric``, ``unit``, the ``median`` over the repetitions and their spread
``lo``, ``hi`` (min, max), ``n_repetitions``, and for a sustainable throughput t_h the
search's interval ``interval_lo``, ``interval_hi`` = [highest pass, lowest fail) and
``lower_bound`` (t_h is only a lower bound: no rate failed). Two such tables (two
profiles, or one profile from two machines or two consecutive runs) are compared key by
key.

Agreement rule (``RULE``, also printed with every report):

- two numbers **agree** when their spreads [lo, hi] overlap once each is widened by the
  relative tolerance t, to [lo - t*|lo|, hi + t*|hi|] (default t = 0: the spreads
  themselves must overlap; ends count, [1, 2] and [2, 3] overlap). A missing lo or hi
  falls back to the median, and the spread always includes the median. A t_h that is only
  a lower bound has no upper end (hi = inf): it agrees with anything not below it;
- a t_h also agrees when the two searches' intervals [interval_lo, interval_hi) overlap
  (widened by the same t; half-open, so [1, 2) and [2, 3) do not overlap). A lower
  bound's interval is open upwards; a t_h without an interval_lo has no interval;
- a key in only one of the tables is reported as "only in A" / "only in B";
- a number that is NaN (its median) on either side is "not measured";
- a number from a single repetition on either side has no spread to judge by: when the
  values differ it is "no spread" (reported with the tolerance that would join them, not
  counted as agreement or disagreement);
- the same key with a different metric or unit on the two sides disagrees.

Only "disagree" fails the check (``exit_code``): "only in", "not measured" and "no
spread" are reported but are not disagreements. ``tolerance_needed`` says, for a
disagreement, the smallest tolerance at which the spreads (or t_h intervals) would meet.

Pure functions on DataFrames, except ``read_headline``, which reads one file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sdsbench.numbers import as_number

HEADLINE_FILE = "headline.csv"
REQUIRED_COLUMNS = (
    "key", "metric", "unit", "median", "lo", "hi", "n_repetitions", "interval_lo",
    "interval_hi",
)
# Columns of the format the comparison does not need: filled in when a table lacks them.
OPTIONAL_COLUMNS: dict[str, Any] = {
    "subject": "", "firings": math.nan, "lower_bound": False, "values": "",
}
NUMERIC_COLUMNS = ("median", "lo", "hi", "n_repetitions", "firings", "interval_lo",
                   "interval_hi")
T_H_METRIC = "t_h_eps"

AGREE = "agree"
DISAGREE = "disagree"
NOT_MEASURED = "not measured"
NO_SPREAD = "no spread"
ONLY_A = "only in A"
ONLY_B = "only in B"
VERDICTS = (AGREE, DISAGREE, NOT_MEASURED, NO_SPREAD, ONLY_A, ONLY_B)

SIDE_COLUMNS = ("subject", "median", "lo", "hi", "n_repetitions", "firings", "interval_lo",
                "interval_hi", "lower_bound", "values")
REPORT_COLUMNS = (
    "key", "metric", "unit", "verdict", "note", "tolerance", "tolerance_needed",
    *(f"a_{c}" for c in SIDE_COLUMNS), *(f"b_{c}" for c in SIDE_COLUMNS),
)


def rule_text(tolerance: float = 0.0) -> str:
    """The agreement rule in words, with the tolerance used."""
    return (
        f"Agreement rule (relative tolerance t = {tolerance:g}): two headline numbers agree "
        "when their spreads [lo, hi] (min..max over the repetitions) overlap, each widened "
        "to [lo - t*|lo|, hi + t*|hi|]; a t_h that is only a lower bound has no upper end. "
        "A t_h also agrees when the searches' intervals [highest pass, lowest fail) overlap "
        "(widened the same way). A key in one set only is 'only in A'/'only in B'; NaN on "
        "either side is 'not measured'; a number of one repetition on either side has no "
        "spread to judge by ('no spread' when the values differ); none of these counts as a "
        "disagreement. The same key with a different metric or unit disagrees."
    )


RULE = rule_text(0.0)


class HeadlineError(ValueError):
    """A headline table that cannot be compared (missing file, column, bad value)."""


# ---------------------------------------------------------------- reading


def headline_path(path: str | Path) -> Path:
    """The headline table named by ``path``: the file itself, or ``<dir>/headline.csv``
    for a summary directory."""
    p = Path(path)
    return p / HEADLINE_FILE if p.is_dir() else p


def read_headline(path: str | Path) -> pd.DataFrame:
    """Read and check one headline table (a file or a summary directory)."""
    p = headline_path(path)
    if not p.exists():
        if Path(path).is_dir():
            raise HeadlineError(f"{path}: summary directory has no {HEADLINE_FILE} ({p})")
        raise HeadlineError(f"no such file or directory: {p}")
    try:
        raw = pd.read_csv(p, dtype={"key": str, "metric": str, "unit": str, "subject": str,
                                    "values": str})
    except pd.errors.EmptyDataError as exc:
        raise HeadlineError(f"{p}: empty file (not a headline table)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise HeadlineError(f"{p}: not a readable CSV file ({exc})") from exc
    return check_headline(raw, source=str(p))


def check_headline(table: pd.DataFrame, source: str = "headline table") -> pd.DataFrame:
    """The table with its columns checked and typed: every required column present
    (``HeadlineError`` names the missing ones), numbers numeric, keys unique and non-empty.
    Optional columns are added when missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise HeadlineError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} (a headline table needs "
            f"{', '.join(REQUIRED_COLUMNS)})")
    out = table.copy()
    for column, default in OPTIONAL_COLUMNS.items():
        if column not in out.columns:
            out[column] = default
    keys = out["key"]
    empty = keys.isna() | (keys.astype(str).str.strip() == "")
    if empty.any():
        rows = [int(i) + 2 for i in out.index[empty]]  # 1-based, after the header line
        raise HeadlineError(f"{source}: empty key on line(s) {rows}")
    out["key"] = keys.astype(str).str.strip()
    dup = out["key"][out["key"].duplicated()].unique().tolist()
    if dup:
        raise HeadlineError(f"{source}: duplicate key(s) {dup} (a key names one number)")
    for column in NUMERIC_COLUMNS:
        values = out[column]
        converted = pd.to_numeric(values, errors="coerce")
        text = values.astype(str).str.strip().str.lower()
        bad = converted.isna() & values.notna() & ~text.isin(["", "nan", "none", "null"])
        if bad.any():
            i = out.index[bad][0]
            raise HeadlineError(f"{source}: column {column!r} of key {out.at[i, 'key']!r} is "
                                f"not a number: {values[i]!r}")
        out[column] = converted.astype(float)
    out["lower_bound"] = [_truthy(v) for v in out["lower_bound"]]
    for column in ("metric", "unit", "subject", "values"):
        out[column] = out[column].fillna("").astype(str).str.strip()
    return out.reset_index(drop=True)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "t")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)


# ---------------------------------------------------------------- the rule


def widen(lo: float, hi: float, tolerance: float) -> tuple[float, float]:
    """[lo, hi] widened by the relative tolerance: [lo - t*|lo|, hi + t*|hi|]."""
    return (lo - tolerance * abs(lo) if math.isfinite(lo) else lo,
            hi + tolerance * abs(hi) if math.isfinite(hi) else hi)


def spread(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The spread [lo, hi] of one number; None when it was not measured (median NaN).
    A missing lo/hi falls back to the median; the spread always includes the median; a
    lower bound has hi = inf."""
    median = as_number(row.get("median"))
    if math.isnan(median):
        return None
    lo, hi = as_number(row.get("lo")), as_number(row.get("hi"))
    lo = median if math.isnan(lo) else min(lo, median)
    hi = median if math.isnan(hi) else max(hi, median)
    if _truthy(row.get("lower_bound", False)):
        hi = math.inf
    return lo, hi


def interval(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The t_h search's interval [highest pass, lowest fail); None when it has none (no
    interval_lo, or no interval_hi and not a lower bound, or an empty interval). A lower
    bound's interval is open upwards."""
    lo, hi = as_number(row.get("interval_lo")), as_number(row.get("interval_hi"))
    if math.isnan(lo):
        return None
    if math.isnan(hi):
        if not _truthy(row.get("lower_bound", False)):
            return None
        hi = math.inf
    return (lo, hi) if lo < hi else None


def spreads_overlap(a: tuple[float, float], b: tuple[float, float],
                    tolerance: float = 0.0) -> bool:
    """Closed intervals [lo, hi], each widened by the tolerance, share a point."""
    (alo, ahi), (blo, bhi) = widen(*a, tolerance), widen(*b, tolerance)
    return alo <= bhi and blo <= ahi


def intervals_overlap(a: tuple[float, float], b: tuple[float, float],
                      tolerance: float = 0.0) -> bool:
    """Half-open intervals [lo, hi), each widened by the tolerance, share a point."""
    (alo, ahi), (blo, bhi) = widen(*a, tolerance), widen(*b, tolerance)
    return alo < bhi and blo < ahi


def tolerance_needed(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The smallest relative tolerance at which the widened ranges ``a`` and ``b`` meet
    (0 when they already do; inf when no tolerance makes them meet)."""
    (alo, ahi), (blo, bhi) = a, b
    if alo <= bhi and blo <= ahi:
        return 0.0
    low_hi, high_lo = (ahi, blo) if ahi < blo else (bhi, alo)
    scale = abs(low_hi) + abs(high_lo)
    return (high_lo - low_hi) / scale if scale > 0 else math.inf


def is_t_h(row: Mapping[str, Any]) -> bool:
    return str(row.get("metric", "")) == T_H_METRIC or str(row.get("key", "")).startswith("t_h/")


def compare_pair(a: Mapping[str, Any], b: Mapping[str, Any],
                 tolerance: float = 0.0) -> dict[str, Any]:
    """The verdict (module docstring) on one key present in both tables: ``verdict``,
    ``note`` (why) and ``tolerance_needed`` (for a disagreement)."""
    result = _compare_pair(a, b, tolerance)
    bounds = [side for side, row in (("A", a), ("B", b))
              if _truthy(row.get("lower_bound", False)) and spread(row) is not None]
    if bounds and result["verdict"] in (AGREE, DISAGREE):
        result["note"] += f"; t_h lower bound in {' and '.join(bounds)}"
    return result


def _compare_pair(a: Mapping[str, Any], b: Mapping[str, Any],
                  tolerance: float) -> dict[str, Any]:
    for field in ("metric", "unit"):
        va, vb = str(a.get(field, "")), str(b.get(field, ""))
        if va != vb:
            return {"verdict": DISAGREE, "note": f"{field} differs: {va!r} vs {vb!r}",
                    "tolerance_needed": math.inf}
    sa, sb = spread(a), spread(b)
    if sa is None or sb is None:
        side = "neither" if sa is None and sb is None else ("A" if sa is None else "B")
        return {"verdict": NOT_MEASURED,
                "note": "measured on neither side" if side == "neither"
                else f"not measured in {side}", "tolerance_needed": math.nan}
    widened = f" within tolerance {tolerance:g}" if tolerance else ""
    if spreads_overlap(sa, sb, 0.0):
        return {"verdict": AGREE, "note": "spreads overlap", "tolerance_needed": 0.0}
    if spreads_overlap(sa, sb, tolerance):
        return {"verdict": AGREE, "note": f"spreads overlap{widened}",
                "tolerance_needed": tolerance_needed(sa, sb)}
    need = tolerance_needed(sa, sb)
    single = [side for side, row in (("A", a), ("B", b)) if as_number(row["n_repetitions"]) < 2]
    if single and not (is_t_h(a) or is_t_h(b)):
        return {"verdict": NO_SPREAD,
                "note": f"one repetition in {' and '.join(single)}: no spread to judge by; "
                        f"would agree at tolerance >= {need:.3g}", "tolerance_needed": need}
    if is_t_h(a) or is_t_h(b):
        ia, ib = interval(a), interval(b)
        if ia is not None and ib is not None:
            if intervals_overlap(ia, ib, tolerance):
                return {"verdict": AGREE, "note": f"t_h intervals overlap{widened}",
                        "tolerance_needed": 0.0 if intervals_overlap(ia, ib) else
                        min(need, tolerance_needed(ia, ib))}
            need = min(need, tolerance_needed(ia, ib))
            what = "spreads and t_h intervals apart"
        else:
            what = "spreads apart (no t_h interval on " + (
                "both sides)" if ia is None and ib is None else
                ("side A)" if ia is None else "side B)"))
    else:
        what = "spreads apart"
    return {"verdict": DISAGREE, "note": f"{what}; would agree at tolerance >= {need:.3g}",
            "tolerance_needed": need}


def compare_headlines(a: pd.DataFrame, b: pd.DataFrame,
                      tolerance: float = 0.0) -> pd.DataFrame:
    """One row per key of either table (A's order, then B's keys not in A): the verdict,
    its note, and both sides' numbers (columns ``REPORT_COLUMNS``)."""
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, not {tolerance!r}")
    a = check_headline(a, "table A")
    b = check_headline(b, "table B")
    rows_a = {r["key"]: r for r in a.to_dict("records")}
    rows_b = {r["key"]: r for r in b.to_dict("records")}
    keys = list(rows_a) + [k for k in rows_b if k not in rows_a]
    out = []
    for key in keys:
        ra, rb = rows_a.get(key), rows_b.get(key)
        if ra is not None and rb is not None:
            result = compare_pair(ra, rb, tolerance)
        else:
            result = {"verdict": ONLY_A if rb is None else ONLY_B,
                      "note": "key missing in " + ("B" if rb is None else "A"),
                      "tolerance_needed": math.nan}
        ref = ra if ra is not None else rb
        row = {"key": key, "metric": ref["metric"], "unit": ref["unit"], **result,
               "tolerance": tolerance}
        for prefix, side in (("a", ra), ("b", rb)):
            for column in SIDE_COLUMNS:
                row[f"{prefix}_{column}"] = (side[column] if side is not None
                                             else OPTIONAL_COLUMNS.get(column, math.nan))
        if ra is not None and rb is not None and ra["unit"] != rb["unit"]:
            row["unit"] = f"{ra['unit']} / {rb['unit']}"
        out.append(row)
    return pd.DataFrame(out, columns=list(REPORT_COLUMNS))


# ---------------------------------------------------------------- summary and formats


def verdict_counts(report: pd.DataFrame) -> dict[str, int]:
    counts = report["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def summary_line(report: pd.DataFrame) -> str:
    """'N of M headline numbers agree' (M: every key of either table)."""
    return f"{verdict_counts(report)[AGREE]} of {len(report)} headline numbers agree"


def counts_line(report: pd.DataFrame) -> str:
    c = verdict_counts(report)
    shared = c[AGREE] + c[DISAGREE] + c[NOT_MEASURED] + c[NO_SPREAD]
    return (f"shared keys: {shared} (agree {c[AGREE]}, disagree {c[DISAGREE]}, "
            f"not measured {c[NOT_MEASURED]}, no spread {c[NO_SPREAD]}); "
            f"only in A: {c[ONLY_A]}; "
            f"only in B: {c[ONLY_B]}")


def exit_code(report: pd.DataFrame) -> int:
    """0 when every key present in both tables agrees (or was not measured), 1 otherwise."""
    return 1 if (report["verdict"] == DISAGREE).any() else 0


def format_number(value: Any) -> str:
    v = as_number(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if abs(v) >= 1000 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.4g}"


def side_cell(report_row: Mapping[str, Any], prefix: str) -> str:
    """'median [lo, hi] n=N' of one side ('-' when the key is missing there); a lower
    bound is marked '>='; a t_h interval follows as 'int [lo, hi)'."""
    if report_row["verdict"] == (ONLY_B if prefix == "a" else ONLY_A):
        return "-"
    g = {c: report_row[f"{prefix}_{c}"] for c in SIDE_COLUMNS}
    if math.isnan(as_number(g["median"])):
        return "not measured"
    n = as_number(g["n_repetitions"])
    mark = ">=" if _truthy(g["lower_bound"]) else ""
    cell = (f"{mark}{format_number(g['median'])} [{format_number(g['lo'])}, "
            f"{format_number(g['hi'])}] n={format_number(n) if not math.isnan(n) else '?'}")
    if not math.isnan(as_number(g["interval_lo"])) or not math.isnan(as_number(g["interval_hi"])):
        hi = as_number(g["interval_hi"])
        cell += (f" int [{format_number(g['interval_lo'])}, "
                 f"{'inf' if math.isnan(hi) and _truthy(g['lower_bound']) else format_number(hi)})")
    return cell


def _cells(report: pd.DataFrame, label_a: str, label_b: str) -> tuple[list[str], list[list[str]]]:
    header = ["key", "unit", f"A: {label_a}", f"B: {label_b}", "verdict", "note"]
    rows = [[str(r["key"]), str(r["unit"]), side_cell(r, "a"), side_cell(r, "b"),
             str(r["verdict"]), str(r["note"])] for r in report.to_dict("records")]
    return header, rows


def format_text(report: pd.DataFrame, tolerance: float = 0.0, label_a: str = "A",
                label_b: str = "B") -> str:
    """The report as an aligned plain-text table, the rule above it, the counts and the
    'N of M headline numbers agree' line below it."""
    header, rows = _cells(report, label_a, label_b)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [f"A: {label_a}", f"B: {label_b}", rule_text(tolerance), "",
             line(header), line(["-" * w for w in widths]), *(line(r) for r in rows), "",
             counts_line(report), summary_line(report)]
    return "\n".join(lines) + "\n"


def format_markdown(report: pd.DataFrame, tolerance: float = 0.0, label_a: str = "A",
                    label_b: str = "B") -> str:
    """The report as Markdown: the two sets, the rule, a table, the counts and the
    'N of M headline numbers agree' line."""
    header, rows = _cells(report, label_a, label_b)

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    table = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|",
             *("| " + " | ".join(esc(c) for c in r) + " |" for r in rows)]
    return "\n".join([
        "# Reproducibility check: headline numbers", "",
        f"- A: `{label_a}`", f"- B: `{label_b}`", "", rule_text(tolerance), "",
        *table, "", counts_line(report) + ".", "", f"**{summary_line(report)}**", "",
    ])
