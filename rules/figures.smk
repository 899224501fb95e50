# ------------------------------------------------------------------ figures
# One target per figure: figures/<profile>/<name>.png (and .pdf), drawn by
# sdsbench/plots/<name>.py from summary files only (never from raw runs).

GENERATOR_BENCH = (
    f"data/{PROFILE}/bench/generator" if config["experiments"]["generator_bench"]["enabled"]
    else None
)
FIGURE_INPUTS = figure_inputs(SUMMARY, RUNS, GROUPS, SEARCHES, GENERATOR_BENCH, CEILING_BENCH)
FIGURE_NAMES = sorted(FIGURE_INPUTS)
FIGURE_FILES = [f"{FIGURES}/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf")]


rule figure:
    input:
        data=lambda w: FIGURE_INPUTS[w.figure],
        code=lambda w: code_of("plot.py", f"sdsbench.plots.{w.figure}"),
        script=f"{SCRIPTS}/plot.py",
    output:
        png=f"{FIGURES}/{{figure}}.png",
        pdf=f"{FIGURES}/{{figure}}.pdf",
    wildcard_constraints:
        figure="|".join(FIGURE_NAMES),
    params:
        groups=GROUPS,
        summary_dir=lambda w: SUMMARY,
    log:
        f"{LOGS}/figure/{{figure}}.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} {wildcards.figure} {CONFIG_ARGS} --summary-dir {params.summary_dir}"
        " --png {output.png} --pdf {output.pdf} > {log} 2>&1"
