"""Render the paper templates to Markdown and to LaTeX.

One body (paper/templates/body.j2) serves both outputs: it writes structure only through
helpers (``sec``, ``fig``, ``tab``, ``b``, ``c``, ``quote``, ``ul``) that each format
implements. In LaTeX every other value printed by the template is escaped, so a run id
or a caption can never break the document. Number helpers (``n``, ``k``, ``pct``) return
plain text and print "n/a" for a missing value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2


class Raw(str):
    """Output of a structure helper: already in the target format, never escaped."""


def _is_missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def n(x: Any, digits: int = 0) -> str:
    """A number with thousands separators; "n/a" when missing."""
    if _is_missing(x):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return f"{float(x):,.{digits}f}"


def k(x: Any) -> str:
    """A rate in thousands: 20000 -> 20k."""
    if _is_missing(x):
        return "n/a"
    return f"{float(x) / 1000:,.4g}k"


def pct(x: Any, digits: int = 1) -> str:
    if _is_missing(x):
        return "n/a"
    return f"{100 * float(x):.{digits}f} per cent"


def yn(x: Any) -> str:
    return "n/a" if _is_missing(x) else ("yes" if x else "no")


#: A latency statistic resting on fewer steady-state window firings than this is marked
#: ``FEW_FIRINGS_MARK`` and is indicative only.
MIN_FIRINGS = 5
FEW_FIRINGS_MARK = "\u2020"  # dagger


def few_firings(firings: Any) -> bool:
    """True when a statistic rests on fewer than MIN_FIRINGS firings (or an unknown number)."""
    return _is_missing(firings) or float(firings) < MIN_FIRINGS


def nf(x: Any, firings: Any, digits: int = 0) -> str:
    """A latency statistic with the steady-state window firings it rests on: "812 (7)";
    marked "812 (3)" + FEW_FIRINGS_MARK below MIN_FIRINGS firings; "n/a" when missing."""
    if _is_missing(x):
        return "n/a"
    count = "n/a" if _is_missing(firings) else f"{float(firings):,.0f}"
    return f"{n(x, digits)} ({count})" + (FEW_FIRINGS_MARK if few_firings(firings) else "")


def firings_note() -> str:
    """The note beside every table or text that prints latencies with ``nf``."""
    return (f"Latencies as value (steady firings): the number of distinct steady-state "
            f"windows the statistic rests on; {FEW_FIRINGS_MARK} fewer than {MIN_FIRINGS} "
            f"steady firings: indicative only.")


def repetitions(count: Any) -> str:
    """A count of repetitions in words: "3 repetitions", "1 repetition"."""
    if _is_missing(count):
        return "n/a repetitions"
    count = int(count)
    return f"{count} repetition" + ("" if count == 1 else "s")


def spread(median: Any, lo: Any, hi: Any, count: Any = None, digits: int = 0) -> str:
    """A median over repetitions with its range: "812 [700-900]"; a single repetition
    (``count`` 1) prints the value alone; "n/a" when missing."""
    if _is_missing(median):
        return "n/a"
    text = n(median, digits)
    single = not _is_missing(count) and int(count) <= 1
    if not single and not _is_missing(lo) and not _is_missing(hi):
        # "to" where a hyphen would read as a minus sign: [-26 to -22], not [-26--22].
        sep = " to " if float(lo) < 0 or float(hi) < 0 else "-"
        text += f" [{n(lo, digits)}{sep}{n(hi, digits)}]"
    return text


def th(x: Mapping[str, Any]) -> str:
    """Sustainable throughput t_h as the paper prints it everywhere: the median over the
    search's repetitions with its [min-max], how many repetitions, and the interval
    [highest pass, lowest fail) of the median repetition; a lower bound says so.

    ``x``: a search result or a row of the stress table (t_h_eps, t_h_min_eps,
    t_h_max_eps, t_h_values_eps, repetitions, interval_eps or lowest_failing_rate_eps,
    t_h_is_lower_bound or lower_bound)."""
    value = x.get("t_h_eps")
    reps = 1 if _is_missing(x.get("repetitions")) else int(x.get("repetitions"))
    if _is_missing(value):
        return f"none found: no rate tried passed ({repetitions(reps)})"
    values = x.get("t_h_values_eps")
    found = reps if not values else sum(1 for v in values if not _is_missing(v))
    lower = x.get("lower_bound", x.get("t_h_is_lower_bound"))
    lower = bool(lower) and not _is_missing(lower)
    text = ("at least " if lower else "") + spread(value, x.get("t_h_min_eps"),
                                                    x.get("t_h_max_eps"), found)
    if reps <= 1:
        text += " events/s (one repetition)"
    elif found == reps:
        text += f" events/s (median of {repetitions(reps)})"
    else:
        text += f" events/s (median of the {found} of {repetitions(reps)} that found a rate)"
    interval = list(x.get("interval_eps") or [value, x.get("lowest_failing_rate_eps")])
    low = value if _is_missing(interval[0]) else interval[0]
    if _is_missing(interval[1]):
        return text + f", interval [{n(low)}, none failed): a lower bound, no rate tried failed"
    return text + f", interval [{n(low)}, {n(interval[1])})"


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", FEW_FIRINGS_MARK: r"\textdagger{}",
}
_TEX_RE = re.compile("|".join(re.escape(c) for c in _TEX_SPECIALS))


def tex_escape(text: str) -> str:
    return _TEX_RE.sub(lambda m: _TEX_SPECIALS[m.group(0)], text)


class Markdown:
    name = "md"

    def escape(self, text: str) -> str:
        return text

    def sec(self, title: str) -> Raw:
        return Raw(f"## {title}")

    def subsec(self, title: str) -> Raw:
        return Raw(f"### {title}")

    def b(self, text: Any) -> Raw:
        return Raw(f"**{text}**")

    def c(self, text: Any) -> Raw:
        return Raw(f"`{text}`")

    def quote(self, text: str) -> Raw:
        body = "\n".join("    " + line if line else "" for line in str(text).splitlines())
        return Raw(body)

    def ul(self, items: Iterable[Any]) -> Raw:
        return Raw("\n".join(f"- {item}" for item in items))

    def fig(self, figure: dict[str, Any]) -> Raw:
        if not isinstance(figure, dict):  # a figure the profile does not draw
            return Raw("")
        return Raw(f"![{figure['name']}]({figure['png']})\n\n"
                   f"*Figure {figure['name']}.* {figure['caption']}")

    def tab(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> Raw:
        lines = []
        if caption:
            lines += [f"*{caption}*", ""]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            lines.append("| " + " | ".join(str(v) for v in row) + " |")
        return Raw("\n".join(lines))


class Latex:
    name = "tex"

    def escape(self, text: str) -> str:
        return tex_escape(text)

    def sec(self, title: str) -> Raw:
        return Raw(rf"\section{{{tex_escape(title)}}}")

    def subsec(self, title: str) -> Raw:
        return Raw(rf"\subsection{{{tex_escape(title)}}}")

    def b(self, text: Any) -> Raw:
        return Raw(rf"\textbf{{{tex_escape(str(text))}}}")

    def c(self, text: Any) -> Raw:
        return Raw(rf"\texttt{{{tex_escape(str(text))}}}")

    def quote(self, text: str) -> Raw:
        # verbatim needs no escaping; only its own end marker could break it.
        return Raw("\\begin{verbatim}\n" + str(text).replace("\\end{verbatim}", "") +
                   "\n\\end{verbatim}")

    def ul(self, items: Iterable[Any]) -> Raw:
        body = "\n".join(rf"  \item {tex_escape(str(item))}" for item in items)
        return Raw("\\begin{itemize}\n" + body + "\n\\end{itemize}")

    def fig(self, figure: dict[str, Any]) -> Raw:
        if not isinstance(figure, dict):  # a figure the profile does not draw
            return Raw("")
        return Raw(
            "\\begin{figure}[htbp]\n\\centering\n"
            rf"\includegraphics[width=\linewidth,height=0.45\textheight,keepaspectratio]"
            rf"{{{figure['pdf']}}}" "\n"
            rf"\caption{{{tex_escape(figure['caption'])}}}" "\n"
            rf"\label{{fig:{figure['name']}}}" "\n\\end{figure}"
        )

    def tab(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> Raw:
        cols = "l" * len(headers)
        body = [" & ".join(tex_escape(str(h)) for h in headers) + r" \\ \hline"]
        body += [" & ".join(tex_escape(str(v)) for v in row) + r" \\" for row in rows]
        out = "\\begin{table}[htbp]\n\\centering\n\\small\n"
        if caption:
            out += rf"\caption{{{tex_escape(caption)}}}" "\n"
        out += (rf"\resizebox{{\linewidth}}{{!}}{{\begin{{tabular}}{{{cols}}}" "\n"
                + "\n".join(body) + "\n\\end{tabular}}\n\\end{table}")
        return Raw(out)


def render(template_dir: str | Path, template: str, fmt: Markdown | Latex,
           context: dict[str, Any]) -> str:
    """Render ``template`` with ``context`` and the helpers of ``fmt``."""

    def finalize(value: Any) -> Any:
        if isinstance(value, Raw):
            return value
        if value is None:
            return "n/a"
        return fmt.escape(str(value))

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails, never prints ""
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.do"],
    )
    helpers = {name: getattr(fmt, name) for name in
               ("sec", "subsec", "b", "c", "quote", "ul", "fig", "tab")}
    helpers |= {"n": n, "k": k, "pct": pct, "yn": yn, "fmt": fmt.name,
                "missing": _is_missing, "nf": nf, "few_firings": few_firings,
                "firings_note": firings_note, "min_firings": MIN_FIRINGS,
                "repetitions": repetitions, "spread": spread, "th": th}
    return env.get_template(template).render(**context, **helpers)
