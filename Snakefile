# sdsbench workflow: every figure, table and the paper rebuilt from engine runs.
#
#   config/config.yaml (+ --configfile config/full.yaml)       one profile per invocation
#     -> data/<profile>/raw/<run_id>/             one engine run (rules/run.smk; never overlap)
#     -> data/<profile>/search/<search_id>.json   t_h search (trial runs in .../<search_id>/trials/)
#     -> data/<profile>/summary/runs/<run_id>.json, windows/, series/    per-run analysis
#     -> data/<profile>/summary/<table>.csv       tables across runs (rules/analyze.smk)
#     -> figures/<profile>/<figure>.png|.pdf      one rule per figure (rules/figures.smk)
#     -> paper/build/<profile>/paper.md, paper.tex (+ paper.pdf with a TeX engine)
#   logs/<profile>/...                             logs, kept apart from results
#
# Targets: `all` (everything), `report` (the paper and all it needs), any single file.

import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# Relative to the Snakefile, so `snakemake -d <elsewhere>` finds it too.
configfile: f"{workflow.basedir}/config/config.yaml"

# The library validates first: its errors name the bad key (e.g. "config key
# experiments.groups.baseline.rates_eps.0: ..."); then the template's validation.
sys.path.insert(0, workflow.basedir)
from sdsbench.config import validate_config  # noqa: E402

validate_config(config)
validate(config, "config/schema.yaml")

include: "rules/common.smk"
include: "rules/run.smk"
include: "rules/analyze.smk"
include: "rules/faults.smk"
include: "rules/figures.smk"
include: "rules/paper.smk"


# Leave the machine as we found it: engine runs start the services (PostgreSQL, Kafka)
# when they are not running; if they were not running when this invocation began, stop
# them when it ends (rebuilding a figure never stops services someone started by hand).
# Engine sessions (Spark, Flink JVMs that served this invocation's runs) always end with it.
onsuccess:
    engine_session.stop_sessions(engine_session.sessions_root(SERVICES_STATE_DIR))
    if not SERVICES_WERE_UP:
        services_stack.stop_services(SERVICES_STATE_DIR)


onerror:
    engine_session.stop_sessions(engine_session.sessions_root(SERVICES_STATE_DIR))
    if not SERVICES_WERE_UP:
        services_stack.stop_services(SERVICES_STATE_DIR)


rule all:
    input:
        TABLES,
        FIGURE_FILES,
        PAPER_FILES,
    default_target: True


rule report:
    input:
        PAPER_FILES,
