"""Reproducibility check: compare the headline numbers of two result sets.

    python scripts/compare_results.py data/quick/summary/headline.csv other/headline.csv \
        [--tolerance 0.05] [--out report.csv] [--md report.md]

A and B are headline tables (``data/<profile>/summary/headline.csv``) or summary
directories holding one: two profiles, or one profile from two machines or two
consecutive runs. Each key is judged by the rule of sdsbench.analysis.reproducibility
(printed with the report): spreads [lo, hi] overlap, widened by the relative tolerance;
for t_h also the [highest pass, lowest fail) intervals. Prints a table, the counts and
"N of M headline numbers agree".

Exit code: 0 when every number present in both sets agrees, 1 when one disagrees, 2 on bad
input (a missing file, a missing column, an unreadable value).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdsbench.analysis.reproducibility import (  # noqa: E402
    HeadlineError,
    compare_headlines,
    exit_code,
    format_markdown,
    format_text,
    headline_path,
    read_headline,
)
from sdsbench.rundir import write_text_atomic  # noqa: E402


def tolerance_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="exit code: 0 all shared numbers agree, 1 some disagree, 2 bad input")
    parser.add_argument("a", help="headline.csv of set A, or its summary directory")
    parser.add_argument("b", help="headline.csv of set B, or its summary directory")
    parser.add_argument("--tolerance", type=tolerance_arg, default=0.0,
                        help="relative tolerance widening each spread (default 0, e.g. 0.05)")
    parser.add_argument("--out", help="write the comparison as CSV here")
    parser.add_argument("--md", help="write the comparison as Markdown here")
    args = parser.parse_args(argv)  # usage errors exit with 2
    try:
        a, b = read_headline(args.a), read_headline(args.b)
    except HeadlineError as exc:
        print(f"compare_results: error: {exc}", file=sys.stderr)
        return 2
    label_a, label_b = str(headline_path(args.a)), str(headline_path(args.b))
    report = compare_headlines(a, b, args.tolerance)
    sys.stdout.write(format_text(report, args.tolerance, label_a, label_b))
    if args.out:
        write_text_atomic(args.out, report.to_csv(index=False))
    if args.md:
        write_text_atomic(args.md, format_markdown(report, args.tolerance, label_a, label_b))
    return exit_code(report)


if __name__ == "__main__":
    raise SystemExit(main())
