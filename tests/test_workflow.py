"""The Snakemake workflow: lint, dry runs of both profiles, config errors, and a complete
report built from fabricated (TEST-ONLY, see tests/synthetic_runs.py) run directories.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from synthetic_runs import fabricate_run, fabricate_staircase_backlog

from sdsbench.analysis.throughput_search import combine_repetitions
from sdsbench.config import load_config
from sdsbench.experiments import expand_runs, resolve_threshold_rate, searches
from sdsbench.rundir import write_json_atomic
from sdsbench.search import run_search

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

# Lints we accept, and why:
# - conda/container: the environments are the project's virtualenvs (env/setup.sh);
# - PY / CONFIG_ARGS / SCRIPTS in shell commands: how scripts are called, kept out of
#   params on purpose so that a recorded command never changes with the checkout's path
#   (see rules/common.smk).
ALLOWED_LINTS = (
    "Specify a conda environment or container for each rule.",
    "Shell command directly uses variable PY from outside of the rule",
    "Shell command directly uses variable CONFIG_ARGS from outside of the rule",
    "Shell command directly uses variable SCRIPTS from outside of the rule",
)


def snakemake(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run."""
    counts = {}
    block = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    for line in block.splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_lint_finds_nothing_but_the_accepted_lints():
    proc = snakemake("--lint", check=False)
    found = re.findall(r"^\s+\* (.+?):?$", proc.stdout + proc.stderr, flags=re.MULTILINE)
    unexpected = [lint for lint in found if not lint.startswith(ALLOWED_LINTS)]
    assert found, "the lint output could not be parsed"
    assert not unexpected, unexpected


# What the profiles hold, written by hand from config/config.yaml and config/full.yaml
# (not from sdsbench.experiments, whose expansion the dry run is checked against): edit
# these when a profile changes on purpose.
QUICK_RUNS = {
    # baseline: A1/A2 x 2 rates, once
    "a1-constant-r10000", "a1-constant-r100000", "a2-constant-r10000", "a2-constant-r100000",
    # faults: A2 at 10k, its reference and three injections
    "a2-constant-r10000-nofault", "a2-constant-r10000-kill", "a2-constant-r10000-malformed",
    "a2-constant-r10000-brokerrestart",
    # event_time (also the default points of parallelism and watermark delay), 3 times
    *(f"{p}-spp-r20000{rep}" for p in ("a3", "spark", "flink") for rep in ("", "-rep2", "-rep3")),
    # event_time: Spark's Real-Time Mode, 3 times
    *(f"spark-spp-r20000-realtime-local6-update-trig5000{rep}" for rep in ("", "-rep2", "-rep3")),
    # parallelism: Spark local[1], Flink p1, 3 times
    *(f"{r}{rep}" for r in ("spark-spp-r20000-local1-sp1", "flink-spp-r20000-p1")
      for rep in ("", "-rep2", "-rep3")),
    # watermark delay 500 ms, 3 times (Flink at parallelism 1)
    *(f"{r}{rep}" for r in ("a3-spp-r20000-wm500", "spark-spp-r20000-wm500",
                            "flink-spp-r20000-p1-wm500") for rep in ("", "-rep2", "-rep3")),
    # MMPP at 1x and 2x t_h
    *(f"{p}-mmpp-th{k}x" for p in ("a3", "spark", "flink") for k in (1, 2)),
    # knobs: Spark's trigger at 2 s (250 ms is the event_time run), once
    "spark-spp-r20000-trig2000",
}
PROFILE_PLAN = {  # runs, search repetitions, searches
    "quick": (len(QUICK_RUNS), 3 * 3, 3),
    # 142 runs: the quick runs' groups at full size (full.yaml), 121 of them without the
    # knobs group's 7 new settings x 3 repetitions (real-time mode: 2 processes x 20k x 3)
    "full": (142, 6 * 3, 6),
}


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_dry_run_plans_every_run_once(profile, tmp_path):
    extra = ["--configfile", str(REPO / "config" / "full.yaml")] if profile == "full" else []
    # Plan in an empty directory: nothing exists, so everything must be planned.
    proc = snakemake("-n", "report", "--cores", "2", "--resources", "bench_slot=1", *extra,
                     "-d", str(tmp_path))
    counts = job_counts(proc.stdout)
    runs, search_reps, search_count = PROFILE_PLAN[profile]
    assert counts["run_experiment"] == runs
    assert counts["summarize_run"] == runs
    assert counts["search_throughput"] == search_reps
    assert counts["combine_search"] == search_count
    assert counts["figure"] == 12 and counts["paper"] == 1
    planned = set(re.findall(r"^\s+output: data/\w+/raw/(\S+)$", proc.stdout, flags=re.M))
    assert len(planned) == runs  # each run once
    if profile == "quick":
        assert planned == QUICK_RUNS, planned ^ QUICK_RUNS
    # One job at a time: every job with work to do holds the one bench slot, so no
    # summary or figure takes CPU from a run or a benchmark.
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", proc.stdout,
                      flags=re.M | re.S)
    assert len(jobs) == sum(counts.values())
    for rule, block in jobs:
        if rule not in ("all", "report"):
            assert re.search(r"resources: .*bench_slot=1", block), (rule, block)


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"experiments": {"groups": {"baseline": [
            {"pipelines": ["a1"], "processes": ["constant"], "rates_eps": [-5]}]}}},
         "experiments.groups.baseline.0.rates_eps.0"),
        ({"search": {"step_factor": 1.0}}, "search.step_factor"),
        ({"experiments": {"at_threshold": {"process": "poisson"}}},
         "experiments.at_threshold.process"),
    ],
)
def test_a_bad_config_fails_before_anything_runs_naming_the_key(bad, key, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = snakemake("-n", "report", "--configfile", str(path), "-d", str(tmp_path / "w"),
                     check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert not (tmp_path / "w" / "data").exists()


# ------------------------------------------------------- end to end, fabricated runs
SYNTHETIC = {
    "profile": "synthetic",
    "run": {"duration_s": 40},
    "experiments": {
        "warmup_s": 0,
        "groups": {
            "baseline": [{"pipelines": ["a1", "a2"], "processes": ["constant"],
                          "rates_eps": [10000]}],
            "event_time": [{"pipelines": ["a3", "spark"], "processes": ["spp"],
                            "rates_eps": [20000]}],
            "parallelism": [{"pipelines": ["flink"], "processes": ["spp"],
                             "rates_eps": [20000], "vary": {"parallelism": [1, 2]}}],
            "watermark_delay": [{"pipelines": ["spark"], "processes": ["spp"],
                                 "rates_eps": [20000], "vary": {"watermark_delay_ms": [500]}}],
            "knobs": [],
        },
        "at_threshold": {"pipelines": ["flink"], "process": "mmpp", "search_process": "spp",
                         "multiples": [1, 2]},
        # One fault block (lists replace the profile's): the faults table gets a row.
        "faults": {"blocks": [{"pipelines": ["a2"], "processes": ["constant"],
                               "rates_eps": [5000],
                               "injections": [{"kind": "kill_sut", "at_s": 10}]}]},
    },
    # A staircase 10k, 20k, 40k, 80k; fabricated runs keep up to 50k ev/s, so 40k passes
    # and 80k fails; one steady trial at each end confirms it.
    "search": {"pipelines": ["flink"], "processes": ["spp"], "repetitions": 1,
               "start_rate_eps": 10000, "start_rates_eps": {"flink": 10000},
               "step_factor": 2.0, "step_s": 10, "steps": 4, "confirm_trials": 2},
}


def _fabricate_profile(workdir: Path, config_path: Path) -> dict:
    """Fabricated raw runs and search results for every run of the synthetic profile."""
    config = load_config(REPO / "config" / "config.yaml", config_path)
    profile = config["profile"]

    def fake_execute(cfg, spec, out):
        run = fabricate_run(out, spec, cfg)
        return fabricate_staircase_backlog(run, spec, capacity_eps=50_000)

    results = {}
    for sid, s in searches(config).items():
        trials = workdir / "data" / profile / "search" / sid / "trials"
        rep = run_search(config, s["pipeline"], s["process"], trials, execute=fake_execute)
        write_json_atomic(workdir / "data" / profile / "search" / sid / "rep1.json", rep)
        results[sid] = combine_repetitions([rep])
        write_json_atomic(workdir / "data" / profile / "search" / f"{sid}.json", results[sid])
    bench = workdir / "data" / profile / "bench" / "generator"
    bench.mkdir(parents=True)
    (bench / "sustained.csv").write_text("processes,compression,sustained_eps\n1,none,250000\n")
    ceiling = workdir / "data" / profile / "bench" / "ceiling"
    ceiling.mkdir(parents=True)
    (ceiling / "summary.json").write_text(json.dumps(
        {"events": 1000, "exact": True, "repetitions": 1,
         "engines": {"flink": {"parse": {"eps_median": 400000.0, "eps_min": 400000.0,
                                         "eps_max": 400000.0, "n": 1}}}}))
    floor = workdir / "data" / profile / "bench" / "spark_floor"
    floor.mkdir(parents=True)
    (floor / "floor.csv").write_text(
        "variant,repetition,batches,rows_per_batch,cpu_ms_per_batch,jit_ms_per_batch,"
        "codegen_per_batch,batch_ms_median,cores\nwindow,1,40,5000,280,5,1,200,0.5\n")
    for run_id, spec in expand_runs(config).items():
        if spec.get("rate_of"):
            spec = resolve_threshold_rate(spec, results[spec["rate_of"]["search"]])
        drop = 1 if run_id == "spark-spp-r20000-wm500" else 0
        fabricate_run(workdir / "data" / profile / "raw" / run_id, spec, config,
                      drop_windows=drop)
    return config


def test_report_from_fabricated_runs_and_what_a_change_reruns(tmp_path):
    config_path = tmp_path / "synthetic.yaml"
    config_path.write_text(yaml.safe_dump(SYNTHETIC))
    work = tmp_path / "work"
    _fabricate_profile(work, config_path)
    # --no-hooks: these fabricated runs started no services, so none may be stopped.
    common = ["--configfile", str(config_path), "-d", str(work), "--cores", "2",
              "--resources", "bench_slot=1", "--no-hooks"]
    snakemake("report", *common)

    paper = (work / "paper" / "build" / "synthetic" / "paper.md").read_text()
    tex = (work / "paper" / "build" / "synthetic" / "paper.tex").read_text()
    # The staircase 10k, 20k, 40k, 80k: 40k passes, 80k fails, both confirmed by steady runs.
    assert "t_h = 40,000 events/s (one repetition), interval [40,000, 80,000)" in paper
    assert "A4 Spark: 1 of 2 runs had at least one window that did not match" in paper
    assert "One generator process sustained 250,000 events/s, at or above the target" in paper
    assert "Spark's own cost per micro-batch" in paper  # from the bench's CSV, not a new run
    assert r"\section{Summary}" in tex and "t\\_h" in tex
    for name in ("a1_a2_throughput_latency", "latency_vs_rate", "mmpp_latency_over_time",
                 "generator_benchmark",
                 "event_time_spp", "parallelism", "watermark_delay", "e2e_latency_all"):
        assert (work / "figures" / "synthetic" / f"{name}.png").stat().st_size > 5000
    runs_table = (work / "data" / "synthetic" / "summary" / "runs.csv").read_text()
    assert "flink-mmpp-th2x" in runs_table

    # Nothing is stale right after a build.
    plan = snakemake("-n", "report", *common)
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[:3000]

    # A new rate plans exactly one new engine run; nothing else is run again.
    changed = dict(SYNTHETIC)
    changed["experiments"] = yaml.safe_load(yaml.safe_dump(SYNTHETIC["experiments"]))
    changed["experiments"]["groups"]["baseline"][0]["rates_eps"] = [10000, 30000]
    config_path.write_text(yaml.safe_dump(changed))
    plan = snakemake("-n", "report", *common)
    counts = job_counts(plan.stdout)
    assert counts["run_experiment"] == 2  # a1 and a2 at the new rate
    assert counts["summarize_run"] == 2 and "search_throughput" not in counts
    assert re.search(r"run_id=a1-constant-r30000$", plan.stdout, flags=re.MULTILINE)
    assert not re.search(r"run_id=a1-constant-r10000$", plan.stdout, flags=re.MULTILINE)


def test_paper_template_text_is_safe_in_latex():
    # Literal text of the shared body goes into the LaTeX output unescaped: it must not
    # contain characters LaTeX treats specially (values printed by the template are
    # escaped by the renderer).
    text = (REPO / "paper" / "templates" / "body.j2").read_text()
    literal = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", text, flags=re.S)
    bad = [line for line in literal.splitlines() if re.search(r"[_%&#$~^\\]", line)]
    assert not bad, bad


def test_a_single_figure_target_plans_only_its_chain(tmp_path):
    # Expected by hand from config/config.yaml (quick): the SPP event-time figure draws the
    # first repetition of the four event-time runs at 20k ev/s (Spark twice: micro-batches
    # and real-time mode), nothing else.
    proc = snakemake("-n", "figures/quick/event_time_spp.png", "--cores", "2",
                     "--resources", "bench_slot=1", "-d", str(tmp_path))
    counts = job_counts(proc.stdout)
    assert counts == {"run_experiment": 4, "summarize_run": 4, "figure": 1}, counts
    planned = set(re.findall(r"^\s+wildcards: run_id=(\S+)$", proc.stdout, flags=re.M))
    assert planned == {"a3-spp-r20000", "spark-spp-r20000", "flink-spp-r20000",
                       "spark-spp-r20000-realtime-local6-update-trig5000"}, planned
