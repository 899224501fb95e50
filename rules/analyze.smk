# ------------------------------------------------------------------ per-run analysis
# Analysis rules list the project modules their script imports (code_of): editing the
# analysis reruns it (cheap), never the engine runs. Their params are the settings the analysis reads.
ANALYSIS_SETTINGS = {
    "warmup_s": config["experiments"]["warmup_s"],
    "criterion": {k: config["search"][k] for k in (
        "latency_bound_ms", "growth_max_fraction", "rate_tolerance",
        "generator_behind_max_ms")},
}


rule summarize_run:
    input:
        run=f"{RAW}/{{run_id}}",
        code=code_of("summarize_run.py"),
        script=f"{SCRIPTS}/summarize_run.py",
    output:
        summary=f"{SUMMARY}/runs/{{run_id}}.json",
        windows=f"{SUMMARY}/windows/{{run_id}}.csv",
        series=f"{SUMMARY}/series/{{run_id}}.csv",
    params:
        analysis=ANALYSIS_SETTINGS,
    log:
        f"{LOGS}/summarize/{{run_id}}.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} {CONFIG_ARGS} --run-dir {input.run} --summary {output.summary}"
        " --windows {output.windows} --series {output.series} > {log} 2>&1"


rule summarize_search:
    input:
        search=f"{SEARCH}/{{search_id}}.json",
        code=code_of("summarize_search.py"),
        script=f"{SCRIPTS}/summarize_search.py",
    output:
        f"{SUMMARY}/search/{{search_id}}.json",
    params:
        trials=lambda w: f"{SEARCH}/{w.search_id}/trials",
        analysis=ANALYSIS_SETTINGS,
    log:
        f"{LOGS}/summarize/search-{{search_id}}.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} {CONFIG_ARGS} --search {input.search} --trials {params.trials}"
        " --out {output} > {log} 2>&1"


# ------------------------------------------------------------------ tables across runs
TABLE_NAMES = ("runs", "search", "stress", "correctness", "headline", "cpu")
TABLES = [f"{SUMMARY}/{name}.csv" for name in TABLE_NAMES]
RUN_SUMMARIES = [f"{SUMMARY}/runs/{r}.json" for r in RUNS]
SEARCH_SUMMARIES = [f"{SUMMARY}/search/{s}.json" for s in SEARCHES]


rule make_table:
    input:
        runs=RUN_SUMMARIES,
        searches=SEARCH_SUMMARIES,
        # Only the headline table pools the per-window latencies of repetitions.
        windows=lambda w: ([f"{SUMMARY}/windows/{r}.csv" for r in RUNS]
                           if w.table == "headline" else []),
        code=code_of("make_table.py"),
        script=f"{SCRIPTS}/make_table.py",
    output:
        f"{SUMMARY}/{{table}}.csv",
    wildcard_constraints:
        table="|".join(TABLE_NAMES),
    params:
        groups=GROUPS,
        summary_dir=lambda w: SUMMARY,
    log:
        f"{LOGS}/table/{{table}}.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} {CONFIG_ARGS} --table {wildcards.table}"
        " --summary-dir {params.summary_dir} --out {output} > {log} 2>&1"
