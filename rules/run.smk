# ------------------------------------------------------------------ engine runs
# One job per run. Runs never overlap (they would distort each other's measurements):
# every job here takes the single `bench_slot`, and the Makefile passes
# `--resources bench_slot=1`. So does every other job of the workflow (summaries, tables,
# figures, the paper): on the 2-core machine one beside a run or a benchmark takes CPU
# from it (figures were drawn while the ceiling benchmark measured); they cost ~2 minutes
# in all, one after another.
#
# Engine-run rules do NOT list library or engine code as inputs: a code change would
# otherwise rerun every run (hours in the full profile). They rerun when their own
# settings change (params: the run spec and every configuration value the run reads,
# sdsbench.experiments.run_settings), or when asked: `make clean-results`, or
# `snakemake --forcerun run_experiment`.


# Repetitions are interleaved across pipelines: a run's priority falls with its
# repetition (sdsbench.experiments.repetition_priority), so the first repetition of every
# run and search goes before any second one, and drift in the machine's load hits all
# pipelines alike.


rule run_experiment:
    input:
        # Runs at a multiple of t_h need their search's result.
        unpack(lambda w: {"search": f"{SEARCH}/{RUNS[w.run_id]['rate_of']['search']}.json"}
               if RUNS[w.run_id].get("rate_of") else {}),
    output:
        directory(f"{RAW}/{{run_id}}"),
    params:
        spec=lambda w: RUNS[w.run_id],
        settings=lambda w: experiments.run_settings(config, RUNS[w.run_id]),
        search_arg=lambda w, input: (
            f"--search-result {shlex.quote(input.search)}" if "search" in input.keys() else ""
        ),
    log:
        f"{LOGS}/run/{{run_id}}.log",
    priority: lambda w: experiments.repetition_priority(RUNS[w.run_id].get("repetition", 1))
    resources:
        bench_slot=1,
    shell:
        "{PY} {SCRIPTS}/run_experiment.py {CONFIG_ARGS} --run-id {wildcards.run_id}"
        " --out {output} {params.search_arg} > {log} 2>&1"


rule search_throughput:
    # One repetition of a search. Trials are complete runs under <search_id>/trials/, not
    # declared outputs: an interrupted search reuses the trials it finished when rerun.
    output:
        f"{SEARCH}/{{search_id}}/rep{{repetition}}.json",
    params:
        settings=lambda w: experiments.search_settings(config, **SEARCHES[w.search_id]),
        trials=lambda w: f"{SEARCH}/{w.search_id}/trials",
    log:
        f"{LOGS}/search/{{search_id}}-rep{{repetition}}.log",
    priority: lambda w: experiments.repetition_priority(w.repetition)
    resources:
        bench_slot=1,
    wildcard_constraints:
        repetition=r"\d+",
    shell:
        "{PY} {SCRIPTS}/search_throughput.py {CONFIG_ARGS} --search-id {wildcards.search_id}"
        " --repetition {wildcards.repetition} --trials {params.trials} --out {output}"
        " > {log} 2>&1"


rule combine_search:
    # t_h over the repetitions: median and spread (sdsbench.analysis.throughput_search).
    input:
        reps=lambda w: [f"{SEARCH}/{w.search_id}/rep{k}.json"
                        for k in range(1, SEARCH_REPETITIONS + 1)],
        # Only the module that combines: the runs at a multiple of t_h read this output, so
        # a rerun of this rule reruns them (engine runs); the import graph would add
        # modules (rundir, criterion, ...) whose edits cannot change the median.
        code=os.path.relpath(f"{workflow.basedir}/sdsbench/analysis/throughput_search.py"),
        script=f"{SCRIPTS}/combine_search.py",
    output:
        f"{SEARCH}/{{search_id}}.json",
    log:
        f"{LOGS}/search/{{search_id}}.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} --reps {input.reps} --out {output} > {log} 2>&1"


rule bench_generator:
    # The generator's own benchmark into a private broker it starts and stops itself. Its
    # --config takes one file: the base config (the profiles do not change the workload).
    output:
        directory(f"data/{PROFILE}/bench/generator"),
    params:
        bench=config["experiments"]["generator_bench"],
        base_config=lambda w: CONFIG_FILES[0],
        processes=" ".join(str(p) for p in config["experiments"]["generator_bench"]["processes"]),
        compression=" ".join(config["experiments"]["generator_bench"]["compression"]),
    log:
        f"{LOGS}/bench/generator.log",
    resources:
        bench_slot=1,
    shell:
        "{PY} {SCRIPTS}/bench_generator.py --config {params.base_config} --out {output}"
        " --processes {params.processes} --compression {params.compression}"
        " --trial-s {params.bench[trial_s]} --start-rate {params.bench[start_rate_eps]}"
        " > {log} 2>&1"


CEILING = config["experiments"].get("ceiling_bench") or {"enabled": False}
CEILING_BENCH = f"data/{PROFILE}/bench/ceiling" if CEILING["enabled"] else None


rule bench_ceiling:
    # Each engine's pass-through ceiling (sdsbench/ceiling.py) over one topic filled once.
    # Like the engine runs, no code inputs; it reruns when its settings or the engines'
    # settings it runs with change.
    output:
        directory(f"data/{PROFILE}/bench/ceiling"),
    params:
        bench=CEILING,
        engines={"spark": {k: config["spark"][k] for k in ("master", "driver_memory")},
                 "flink": {k: config["flink"][k] for k in ("parallelism", "heap_mb")},
                 "partitions": config["services"]["kafka"]["partitions"]},
    log:
        f"{LOGS}/bench/ceiling.log",
    resources:
        bench_slot=1,
    shell:
        "{PY} {SCRIPTS}/bench_ceiling.py {CONFIG_ARGS} --out {output} > {log} 2>&1"


SPARK_FLOOR = config["experiments"].get("spark_floor_bench") or {"enabled": False}
SPARK_FLOOR_BENCH = f"data/{PROFILE}/bench/spark_floor" if SPARK_FLOOR["enabled"] else None


rule bench_spark_floor:
    # Spark's own cost per micro-batch (engines/spark/batch_floor.py); reruns when its
    # settings or the Spark settings it runs with change.
    output:
        directory(f"data/{PROFILE}/bench/spark_floor"),
    params:
        bench=SPARK_FLOOR,
        spark={k: config["spark"][k] for k in ("master", "trigger_ms", "shuffle_partitions")},
    log:
        f"{LOGS}/bench/spark_floor.log",
    resources:
        bench_slot=1,
    shell:
        "{PY} {SCRIPTS}/bench_spark_floor.py {CONFIG_ARGS} --out {output} > {log} 2>&1"
