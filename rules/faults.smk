# ------------------------------------------------------------------ faults survived (issue 8)
# The faults group (config experiments.faults; sdsbench.experiments): each block's reference
# run (the matrix run with the same spec, else <id>-nofault) and its runs with a fault or
# malformed input. Their engine runs and
# per-run summaries come from the generic rules (run.smk, analyze.smk); the table also
# reads each raw run's metrics/faults.json and metrics/lag.csv (sdsbench.analysis.faults).
FAULT_RUNS = GROUPS.get("faults", [])
FAULTS_TABLE = f"{SUMMARY}/faults.csv"


rule faults_table:
    input:
        runs=[f"{SUMMARY}/runs/{r}.json" for r in FAULT_RUNS],
        windows=[f"{SUMMARY}/windows/{r}.csv" for r in FAULT_RUNS],
        raw=[f"{RAW}/{r}" for r in FAULT_RUNS],
        code=code_of("make_table.py"),
        script=f"{SCRIPTS}/make_table.py",
    output:
        FAULTS_TABLE,
    params:
        summary_dir=lambda w: SUMMARY,
        raw_dir=lambda w: RAW,
    log:
        f"{LOGS}/table/faults.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} {CONFIG_ARGS} --table faults --summary-dir {params.summary_dir}"
        " --raw-dir {params.raw_dir} --out {output} > {log} 2>&1"


if FAULT_RUNS:
    TABLES.append(FAULTS_TABLE)
