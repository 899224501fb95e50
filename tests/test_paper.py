"""The paper's numbers an expert would trust (issue 13): firings beside every latency,
medians with their spread over repetitions, t_h with its interval, the method, and what
a light profile leaves out. Rendered from a small profile of fabricated runs (TEST-ONLY,
tests/synthetic_runs.py), summarized in-process (no Snakemake)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import fabricate_run, fabricate_staircase_backlog

from sdsbench.analysis.faults import faults_table
from sdsbench.analysis.summarize import summarize_search, write_run_summary
from sdsbench.analysis.tables import build_table
from sdsbench.analysis.throughput_search import combine_repetitions
from sdsbench.config import load_config
from sdsbench.experiments import expand_runs, resolve_threshold_rate, searches
from sdsbench.report import paper_context
from sdsbench.report.paper_format import (
    FEW_FIRINGS_MARK,
    MIN_FIRINGS,
    Latex,
    Markdown,
    firings_note,
    nf,
    render,
    spread,
    th,
)
from sdsbench.rundir import write_json_atomic
from sdsbench.search import run_search

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "paper" / "templates"
DAGGER = FEW_FIRINGS_MARK

PROFILE = {
    "profile": "papertest",
    "run": {"duration_s": 40},
    "experiments": {
        "warmup_s": 0,
        "groups": {
            "baseline": [{"pipelines": ["a1", "a2"], "processes": ["constant"],
                          "rates_eps": [10000]}],
            "event_time": [{"pipelines": ["a3", "spark"], "processes": ["spp"],
                            "rates_eps": [20000], "repetitions": 2},
                           {"pipelines": ["spark"], "processes": ["spp"],
                            "rates_eps": [20000], "repetitions": 2,
                            "vary": [{"execution": "real_time", "output_mode": "update",
                                      "master": "local[6]", "trigger_ms": 5000}]}],
            "parallelism": [{"pipelines": ["flink"], "processes": ["spp"],
                             "rates_eps": [20000], "vary": {"parallelism": [1, 2]},
                             "repetitions": 2}],
            "watermark_delay": [{"pipelines": ["spark"], "processes": ["spp"],
                                 "rates_eps": [20000], "vary": {"watermark_delay_ms": [500]}}],
        },
        "at_threshold": {"pipelines": ["flink"], "process": "mmpp", "search_process": "spp",
                         "multiples": [1, 2]},
        "faults": {"blocks": [{"pipelines": ["a2"], "processes": ["constant"],
                               "rates_eps": [5000],
                               "injections": [{"kind": "kill_sut", "at_s": 10}]}]},
    },
    # Staircase 10k, 20k, 40k, 80k. Repetition 1 keeps up to 50k (40k passes, 80k fails),
    # repetition 2 to 30k (20k passes, 40k fails): t_h = the lower middle, 20k [20k-40k].
    "search": {"pipelines": ["flink"], "processes": ["spp"], "repetitions": 2,
               "start_rate_eps": 10000, "start_rates_eps": {"flink": 10000},
               "step_factor": 2.0, "step_s": 10, "steps": 4, "confirm_trials": 0},
}
CAPACITY_EPS = {1: 50_000, 2: 30_000}
#: A fabricated pass-through ceiling (sdsbench.ceiling's summary.json).
CEILING = {"events": 2000000, "exact": True, "repetitions": 3,
         "engines": {"flink": {"raw": {"eps_median": 800000.0, "eps_min": 700000.0,
                                       "eps_max": 900000.0, "n": 3},
                               "parse": {"eps_median": 400000.0, "eps_min": 380000.0,
                                         "eps_max": 500000.0, "n": 3}}}}


#: A fabricated Spark floor (engines.spark.batch_floor's CSV): 2 variants x 3 repetitions.
SPARK_FLOOR = pd.DataFrame(
    [{"variant": v, "repetition": k, "batches": 40, "rows_per_batch": 5000,
      "cpu_ms_per_batch": cpu, "jit_ms_per_batch": 5.0, "codegen_per_batch": cg,
      "batch_ms_median": 200, "cores": 0.5}
     for v, cg, cpus in (("stateless", 0.0, (100.0, 120.0, 110.0)),
                         ("window", 1.0, (260.0, 300.0, 280.0)))
     for k, cpu in enumerate(cpus, start=1)])


def _build(root: Path) -> tuple[dict, Path]:
    config = load_config(REPO / "config" / "config.yaml", overrides=PROFILE)
    data = root / "data" / "papertest"
    summary = data / "summary"

    def fake_execute(cfg, spec, out):
        run = fabricate_run(out, spec, cfg)
        return fabricate_staircase_backlog(run, spec, CAPACITY_EPS[spec["repetition"]])

    results = {}
    for sid, s in searches(config).items():
        trials = data / "search" / sid / "trials"
        reps = [run_search(config, s["pipeline"], s["process"], trials, repetition=k,
                           execute=fake_execute)
                for k in range(1, config["search"]["repetitions"] + 1)]
        results[sid] = combine_repetitions(reps)
        write_json_atomic(summary / "search" / f"{sid}.json",
                          summarize_search(results[sid], trials, config))
    for run_id, spec in expand_runs(config).items():
        if spec.get("rate_of"):
            spec = resolve_threshold_rate(spec, results[spec["rate_of"]["search"]])
        raw = data / "raw" / run_id
        fabricate_run(raw, spec, config, seed=int(spec.get("repetition", 1)),
                      latency_ms=300.0 + 50.0 * (int(spec.get("repetition", 1)) - 1))
        write_run_summary(raw, config, summary / "runs" / f"{run_id}.json",
                          summary / "windows" / f"{run_id}.csv",
                          summary / "series" / f"{run_id}.csv")
    for name in ("runs", "search", "stress", "correctness", "headline", "cpu"):
        build_table(name, summary, config).to_csv(summary / f"{name}.csv", index=False)
    faults_table(config, summary, data / "raw").to_csv(summary / "faults.csv", index=False)
    write_json_atomic(data / "bench" / "ceiling" / "summary.json", CEILING)
    (data / "bench" / "spark_floor").mkdir(parents=True)
    SPARK_FLOOR.to_csv(data / "bench" / "spark_floor" / "floor.csv", index=False)
    return config, summary


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    config, summary = _build(root)
    out = root / "paper"
    out.mkdir()
    context = paper_context.build_context(summary, root / "figures", out, config)
    md = render(TEMPLATES, "paper.md.j2", Markdown(), context)
    tex = render(TEMPLATES, "paper.tex.j2", Latex(), context)
    return {"config": config, "summary": summary, "context": context, "md": md, "tex": tex}


# ------------------------------------------------------------------ formatting helpers
def test_nf_prints_the_firings_and_marks_too_few():
    assert nf(812.4, 7) == "812 (7)"
    assert nf(812.4, MIN_FIRINGS) == f"812 ({MIN_FIRINGS})"
    assert nf(812.4, MIN_FIRINGS - 1) == f"812 ({MIN_FIRINGS - 1}){DAGGER}"
    assert nf(1234.56, 12, 1) == "1,234.6 (12)"
    assert nf(None, 7) == "n/a" and nf(float("nan"), 7) == "n/a"
    assert nf(812, None) == f"812 (n/a){DAGGER}"  # an unknown count is no evidence
    assert "indicative only" in firings_note() and str(MIN_FIRINGS) in firings_note()


def test_spread_and_t_h():
    assert spread(812, 700, 900, 3) == "812 [700-900]"
    assert spread(812, 812, 812, 1) == "812"
    assert spread(None, 1, 2, 3) == "n/a"
    assert spread(-23, -26, -22, 3) == "-23 [-26 to -22]"  # never "[-26--22]"
    assert spread(5, -3, 9, 3) == "5 [-3 to 9]"
    x = {"t_h_eps": 40000.0, "t_h_min_eps": 36000.0, "t_h_max_eps": 44000.0,
         "t_h_values_eps": [40000.0, 36000.0, 44000.0], "repetitions": 3,
         "interval_eps": [40000.0, 44000.0], "t_h_is_lower_bound": False}
    assert th(x) == ("40,000 [36,000-44,000] events/s (median of 3 repetitions), "
                     "interval [40,000, 44,000)")
    lower = x | {"interval_eps": [40000.0, None], "t_h_is_lower_bound": True}
    assert th(lower).startswith("at least 40,000 [36,000-44,000] events/s")
    assert th(lower).endswith("interval [40,000, none failed): a lower bound, "
                              "no rate tried failed")
    one = {"t_h_eps": 20000.0, "repetitions": 1, "lowest_failing_rate_eps": 22000.0,
           "lower_bound": False}
    assert th(one) == "20,000 events/s (one repetition), interval [20,000, 22,000)"
    some = x | {"t_h_values_eps": [40000.0, None, 44000.0], "t_h_min_eps": 40000.0}
    assert "median of the 2 of 3 repetitions that found a rate" in th(some)
    assert th({"t_h_eps": None, "repetitions": 2}).startswith("none found")


def test_the_dagger_is_safe_in_latex():
    assert Latex().escape(nf(10, 2)) == r"10 (2)\textdagger{}"


# ------------------------------------------------------------------ leaves out
def test_what_the_quick_profile_leaves_out_comes_from_the_two_configs():
    quick = load_config(REPO / "config" / "config.yaml")
    full = paper_context.full_profile(quick)
    assert full is not None and full["profile"] == "full"
    diffs = {d["what"]: d for d in paper_context.leaves_out(quick, full)}
    confirm = diffs.get("t_h search: steady confirmation trials per repetition")
    if quick["search"]["confirm_trials"] != full["search"]["confirm_trials"]:
        assert confirm["this"] == f"{quick['search']['confirm_trials']:g}"
        assert confirm["full"] == f"{full['search']['confirm_trials']:g}"
    # Only differences are listed, each both ways.
    for d in diffs.values():
        assert d["this"] != d["full"]
    assert paper_context.full_profile(full) is None  # the full profile leaves nothing out
    # A profile without a group or a search (the cluster profile): one line each.
    cluster = load_config(REPO / "config" / "config.yaml", REPO / "config" / "cluster.yaml")
    lines = [d["what"] for d in paper_context.leaves_out(
        cluster, paper_context.full_profile(cluster))]
    assert "A1/A2 baseline: runs, repetitions included" in lines
    assert "t_h search: pipelines" in lines
    assert not [w for w in lines if w.startswith(("A1/A2 baseline: ", "t_h search: "))
                and w not in ("A1/A2 baseline: runs, repetitions included",
                              "t_h search: pipelines")]


# ------------------------------------------------------------------ the rendered paper
def test_the_context_reads_the_headline_table(built):
    ctx = built["context"]
    assert ctx["headline"], "headline.csv is part of the context"
    keys = {r["key"] for r in ctx["headline"]}
    assert "t_h/flink-spp" in keys
    bases = {b["base_run_id"]: b for b in ctx["event_time_bases"]}
    assert set(bases) == {"a3-spp-r20000", "spark-spp-r20000", RT}
    assert [r["run_id"] for r in bases["a3-spp-r20000"]["runs"]] == [
        "a3-spp-r20000", "a3-spp-r20000-rep2"]
    th_entry = ctx["t_h"]["flink"]["spp"]
    assert th_entry["t_h_eps"] == 20000 and th_entry["repetitions"] == 2
    assert th_entry["t_h_min_eps"] == 20000 and th_entry["t_h_max_eps"] == 40000
    assert th_entry["staircases"] == 2 and th_entry["steady_trials"] == 0
    assert len(th_entry["stop_reasons"]) == 2
    stress = ctx["stress"][0]
    assert [a["label"] for a in stress["at"]] == ["1 x t_h", "2 x t_h"]


RT = "spark-spp-r20000-realtime-local6-update-trig5000"


def test_real_time_mode_is_set_beside_the_micro_batch_run_of_its_spec(built):
    [pair] = built["context"]["real_time"]
    assert pair["real_time"]["base_run_id"] == RT
    assert pair["micro_batch"]["base_run_id"] == "spark-spp-r20000"
    runs = pair["real_time"]["runs"]
    per_event = sorted(r["result_records"] / r["events_sent"] for r in runs)
    assert pair["records_per_event"]["n_repetitions"] == 2
    assert pair["records_per_event"]["lo"] == pytest.approx(per_event[0])
    li = pair["last_insertion_p95"]["real_time"]
    assert li["median"] == pytest.approx(
        sorted(r["latency_from_last_insertion_ms_p95"] for r in runs)[0] / 2
        + sorted(r["latency_from_last_insertion_ms_p95"] for r in runs)[1] / 2)
    h = pair["real_time"]["headline"]
    md = built["md"]
    paragraph = next(p for p in md.split("\n\n") if "Real-Time Mode, the third A4" in p)
    assert RT in paragraph and "micro-batch run spark-spp-r20000," in paragraph
    assert spread(h["median"], h["lo"], h["hi"], h["n_repetitions"]) + " ms over 2" in paragraph
    assert "A4 Spark real-time mode" in md  # the headline table's label of the run


def test_t_h_is_printed_with_its_spread_interval_and_stop_reasons(built):
    md = built["md"]
    expected = ("t_h = 20,000 [20,000-40,000] events/s (median of 2 repetitions), "
                "interval [20,000, 40,000)")
    assert expected in md  # summary bullet, stress table, target
    assert md.count("[20,000-40,000] events/s (median of 2 repetitions)") >= 3
    assert "rep 1: backlog grew for good" in md and "rep 2: backlog grew for good" in md
    assert "from 2 staircase run(s) and 0 steady trial(s)" in md


def test_latencies_carry_their_firings(built):
    md = built["md"]
    rows = {r["run_id"]: r for r in built["context"]["runs"]}
    r = rows["spark-spp-r20000-rep2"]
    cell = nf(r["latency_above_delay_ms_p95"], r["latency_above_delay_ms_firings"])
    assert re.search(r"\(\d+\)", cell)
    line = next(x for x in md.splitlines() if x.startswith("| spark-spp-r20000-rep2 | 20,000 |"))
    assert cell in line  # the all-runs table
    # Runs of 40 s rest on fewer than MIN_FIRINGS firings: marked, with the note.
    assert r["latency_above_delay_ms_firings"] < MIN_FIRINGS
    assert DAGGER in md and firings_note() in md
    assert "(firings) (ms)" in md


def test_stress_table_shows_realised_rate_high_share_and_firings(built):
    md = built["md"]
    at = built["context"]["stress"][0]["at"][0]
    header = ("| pipeline | rate | run | nominal (ev/s) | realised (ev/s) | "
              "time in MMPP high state | p95 above delay (firings) (ms) |")
    assert header in md
    line = next(x for x in md.splitlines() if x.startswith("| A4 Flink | 1 x t_h |"))
    assert f"{at['achieved_rate_eps']:,.0f}" in line
    assert f"{100 * at['mmpp_high_share']:.0f} per cent" in line
    assert nf(at["latency_above_delay_ms_p95"], at["latency_above_delay_ms_firings"]) in line


def test_headline_sections_show_median_spread_repetitions_and_pooled_firings(built):
    md = built["md"]
    ctx = built["context"]
    for group_header in ("Headline, event time", "headline of the parallelism sweep",
                         "headline of the watermark-delay sweep"):
        assert group_header in md
    h = ctx["headline_p95"].get("a3-spp-r20000")
    assert h is not None
    line = next(x for x in md.splitlines() if x.startswith("| a3-spp-r20000 | A3 "))
    assert spread(h["median"], h["lo"], h["hi"], h["n_repetitions"]) in line
    assert nf(h["pooled"], h["firings"]) in line


def test_method_section_and_what_the_profile_leaves_out(built):
    md = built["md"]
    assert "## Method: steady state, repetitions and the search for t_h" in md
    assert "Karimov et al. (ICDE 2018)" in md and "OpenMessaging Benchmark" in md
    assert "Theodolite" in md
    assert "step factor 2.0" in md and "less than 100 per cent above" in md
    # confirm_trials 0 is said plainly, with the number from the config.
    assert "This profile runs no steady confirmation trials (`search.confirm_trials` is 0)" in md
    assert "### What this profile leaves out" in md
    assert "t_h search: steady confirmation trials per repetition: 0 here, " in md
    assert "event time: 2; parallelism: 2; watermark delay: 1" in md


def test_latex_output_escapes_the_new_text(built):
    tex = built["tex"]
    assert r"\textdagger{}" in tex and "\u2020" not in tex
    assert r"\section{Method: steady state, repetitions and the search for t\_h}" in tex
    body = tex.split(r"\begin{document}", 1)[1]
    # No raw underscore outside verbatim blocks and commands that escape it.
    outside = re.sub(r"\\begin\{verbatim\}.*?\\end\{verbatim\}", "", body, flags=re.S)
    outside = re.sub(r"\\(includegraphics|label)(\[[^\]]*\])?\{[^}]*\}", "", outside)
    assert not re.search(r"(?<!\\)_", outside)


def test_headline_latency_rows_rest_on_the_runs(built):
    # Fabricated repetitions: p95 above delay 300 ms (rep 1) and 350 ms (rep 2), 3 firings
    # each.
    h = built["context"]["headline_p95"]["a3-spp-r20000"]
    assert (h["median"], h["lo"], h["hi"], h["n_repetitions"]) == (325, 300, 350, 2)
    assert h["firings"] == 6
    line = next(x for x in built["md"].splitlines() if x.startswith("| a3-spp-r20000 | A3 "))
    assert "| 325 [300-350] | 2 | 350 (6) |" in line


# Numbers the template may write itself, each with its reason; every other number in the
# paper comes from a summary file through the context.
TEMPLATE_NUMBERS = {
    "5": "the 5-minute load average (a unit of the kernel's load average, not a result)",
    "2018": "the year of the Karimov et al. citation",
}


def _typed_numbers(text: str) -> list[str]:
    """Numbers written in the template's own text, or as string literals inside its
    expressions ('"47,158"' would print a typed result as if it were computed)."""
    literal = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", text, flags=re.S)
    found = re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])", literal)
    for expression in re.findall(r"\{\{.*?\}\}|\{%.*?%\}", text, flags=re.S):
        found += re.findall(r"[\"'](\d[\d,.]*)[\"']", expression)
    return found


def test_the_cpu_section_prints_the_cpu_table(built):
    # fabricate_run samples the SUT at 80 % of a core: 0.8e6 / rate CPU-us per event.
    table = pd.read_csv(built["summary"] / "cpu.csv")
    row = table[(table["kind"] == "per_event") & (table["scope"] == "sut")].iloc[0]
    assert row["median"] == pytest.approx(0.8e6 / row["rate_eps"], rel=0.01)
    section = built["md"].split("## Where the CPU goes")[1].split("\n## ")[0]
    assert f"| {row['subject']} | {row['rate_eps']:,.0f} | {row['median']:.1f}" in section
    assert "no CPU split" in section and "This profile has no CPU samples" not in section


def test_t_h_is_given_as_a_fraction_of_the_engine_ceiling(built):
    flink = next(r for r in built["context"]["ceiling"]["rows"] if r["engine"] == "flink")
    t_h = built["context"]["t_h"]["flink"]["spp"]
    assert flink["fraction"] == pytest.approx(t_h["t_h_eps"] / 400_000)
    assert flink["fraction_lo"] == pytest.approx(t_h["t_h_min_eps"] / 500_000)
    section = built["md"].split("### Each engine against its own ceiling")[1].split("\n## ")[0]
    assert "800,000 [700,000-900,000]" in section and "400,000 [380,000-500,000]" in section
    lo, hi = 100 * flink["fraction_lo"], 100 * flink["fraction_hi"]
    assert f"{100 * flink['fraction']:.0f} [{lo:.0f}-{hi:.0f}] per cent" in section
    assert "Every pass counted every event" in section


def test_spark_floor_is_printed_per_variant_with_its_spread(built):
    floor = built["context"]["spark_floor"]["by_variant"]
    assert floor["window"]["median"] == 280.0 and floor["window"]["n"] == 3
    section = built["md"].split("### Spark's own cost per micro-batch")[1].split("\n## ")[0]
    assert "| 110 [100-120] | 3 | 5 | 0.00 | 120 |" in section
    assert "| 280 [260-300] | 3 | 5 | 1.00 | 120 |" in section
    assert "5,000 rows per batch" in section


def test_the_paper_template_types_no_result_number() -> None:
    for template in (REPO / "paper" / "templates").glob("*.j2"):
        typed = [n for n in _typed_numbers(template.read_text()) if n not in TEMPLATE_NUMBERS]
        assert not typed, f"{template.name} writes numbers itself: {typed}"


def test_the_typed_number_check_finds_one() -> None:
    assert _typed_numbers("t_h was 47,158 ev/s; {{ n(c.t_h) }}") == ["47,158"]
    assert _typed_numbers('{{ "1,023" }} ms') == ["1,023"]
    assert _typed_numbers("{{ n(x / 60, 1) }} minutes") == []
