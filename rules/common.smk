# ------------------------------------------------------------------ shared definitions
# Only names here; the logic lives in the library (sdsbench.experiments: the run matrix
# and what each run depends on; sdsbench.plots.common: what each figure reads).
import json
import os
import re
import shlex
import shutil
from pathlib import Path

from sdsbench import experiments
from sdsbench.plots.common import figure_inputs
from sdsbench.services import stack as services_stack
from sdsbench import code_deps, engine_session, paths

PROFILE = config["profile"]
RAW = f"data/{PROFILE}/raw"
SEARCH = f"data/{PROFILE}/search"
SUMMARY = f"data/{PROFILE}/summary"
FIGURES = f"figures/{PROFILE}"
PAPER = f"paper/build/{PROFILE}"
LOGS = f"logs/{PROFILE}"

RUNS = experiments.expand_runs(config)
GROUPS = experiments.run_groups(config)
SEARCHES = experiments.searches(config)
SEARCH_REPETITIONS = int(config["search"].get("repetitions", 1))

# Scripts run with the interpreter that runs Snakemake (the main venv) and get the same
# configuration: the workflow's config file, then those given on the command line, then
# any --config overrides. They appear in shell commands as {PY}, {SCRIPTS} and
# {CONFIG_ARGS}, not as params: the recorded command template then stays the same on
# every machine and checkout, so moving the repository reruns nothing.
PY = shlex.quote(sys.executable)
SCRIPTS = os.path.relpath(f"{workflow.basedir}/scripts")
CONFIG_FILES = [
    os.path.relpath(p)
    for p in (f"{workflow.basedir}/config/config.yaml", *workflow.config_settings.configfiles)
]
CONFIG_ARGS = " ".join(f"--config {shlex.quote(p)}" for p in CONFIG_FILES)
if workflow.config_settings.config:
    _overrides = shlex.quote(json.dumps(dict(workflow.config_settings.config)))
    CONFIG_ARGS = f"{CONFIG_ARGS} --overrides {_overrides}"

SERVICES_STATE_DIR = paths.services_state_dir()
_services = services_stack.load_services(SERVICES_STATE_DIR)
SERVICES_WERE_UP = _services is not None and all(
    v == "ok" for v in services_stack.check_services(_services, timeout=3).values()
)

TEMPLATES = os.path.relpath(f"{workflow.basedir}/paper/templates")


def code_of(script, *modules):
    """What a rule's script runs of the project: every module it (and ``modules``, which
    it imports by name) imports, transitively (sdsbench.code_deps); the script itself is
    the rule's ``script`` input."""
    paths = code_deps.code_inputs([f"scripts/{script}"], modules, root=Path(workflow.basedir))
    return [os.path.relpath(f"{workflow.basedir}/{p}") for p in paths
            if p != f"scripts/{script}"]


wildcard_constraints:
    run_id="|".join(re.escape(r) for r in sorted(RUNS)) or "^$",
    search_id="|".join(re.escape(s) for s in sorted(SEARCHES)) or "^$",
