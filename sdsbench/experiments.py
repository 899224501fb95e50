"""Run specs: what one run is. The Snakefile expands the config's experiment matrix
into run specs (see ``expand_runs``); pipelines read their settings with
``pipeline_params`` so a run's settings come from one place.

A run spec is a JSON-able dict::

    {"run_id": "a2-constant-r50000", "pipeline": "a2",
     "arrival": {"process": "constant", "rate_eps": 50000},
     "duration_s": 30, "seed": 123, "params": {...overrides of config[pipeline]...}}
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sdsbench.config import deep_merge


def derive_seed(master_seed: int, material: str) -> int:
    """A stable seed: the same material always gets the same seed."""
    digest = hashlib.sha256(f"{master_seed}:{material}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def workload_seed(
    config: dict[str, Any], process: str, rate: float | str, duration_s: float,
    repetition: int = 1,
) -> int:
    """The seed of a run's input: it depends on the workload (arrival process, rate,
    duration, workload settings, repetition), never on the pipeline or its settings, so
    every pipeline run at the same spec receives the identical event stream. ``rate`` is
    a string for runs whose rate is a multiple of t_h (``"2x t_h"``): pipelines with
    different t_h then still share the MMPP state path."""
    material = json.dumps(
        {"process": process, "rate": rate, "duration_s": float(duration_s),
         "workload": config["workload"], "repetition": int(repetition)},
        sort_keys=True,
    )
    return derive_seed(int(config["seed"]), material)


def pipeline_params(
    config: dict[str, Any], spec: dict[str, Any], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The pipeline's config section with the run's own overrides applied; a key of
    ``required`` that is missing raises ConfigError naming ``<pipeline>.<key>``."""
    params = deep_merge(config.get(spec["pipeline"], {}), spec.get("params", {}))
    missing = [k for k in required if k not in params]
    if missing:
        from sdsbench.config import ConfigError

        raise ConfigError(
            f"config key {spec['pipeline']}.{missing[0]}: missing (see config/schema.yaml)"
        )
    return params


def make_spec(
    config: dict[str, Any],
    pipeline: str,
    process: str,
    rate_eps: float,
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    duration_s: float | None = None,
    repetition: int = 1,
) -> dict[str, Any]:
    """Build one run spec; the run id says what the run is.

    Settings equal to the pipeline's configured value are dropped from ``params``, so a
    sweep point that is the default is the same run (same id) as the default run.
    Repetition k >= 2 of a run is ``<id>-rep<k>`` (``base_run_id`` names the run it
    repeats); its input has a seed of its own, shared by every pipeline's repetition k."""
    defaults = config.get(pipeline) or {}
    params = {k: v for k, v in (params or {}).items() if k not in defaults or defaults[k] != v}
    if run_id is None:
        suffix = "".join(f"-{_short(k)}{_id_safe(v)}" for k, v in sorted(params.items()))
        run_id = f"{pipeline}-{process}-r{int(rate_eps)}{suffix}"
    duration = float(duration_s if duration_s is not None else config["run"]["duration_s"])
    return {
        "run_id": repetition_id(run_id, repetition),
        "base_run_id": run_id,
        "repetition": int(repetition),
        "pipeline": pipeline,
        "arrival": {"process": process, "rate_eps": float(rate_eps)},
        "duration_s": duration,
        "seed": workload_seed(config, process, float(rate_eps), duration, repetition),
        "params": params,
    }


def repetition_id(run_id: str, repetition: int) -> str:
    """The id of repetition ``repetition`` of ``run_id`` (the first keeps the id)."""
    return run_id if repetition <= 1 else f"{run_id}-rep{repetition}"


def repetition_priority(repetition: int | str) -> int:
    """The workflow's job priority of a repetition: the first repetitions of every run and
    search go before any second one (interleaved across pipelines)."""
    return max(0, 100 - int(repetition))


def repetitions_of(config: dict[str, Any], block: dict[str, Any] | None = None) -> int:
    """How often a block's runs are repeated: its own ``repetitions``, else the profile's
    ``experiments.repetitions`` (1 when neither is set)."""
    block = block or {}
    return int(block.get("repetitions") or config["experiments"].get("repetitions") or 1)


_SHORT = {"parallelism": "p", "watermark_delay_ms": "wm", "watermark_bound_ms": "wm",
          "shuffle_partitions": "sp", "master": "", "trigger_ms": "trig",
          "watermark_interval_ms": "wmi", "buffer_timeout_ms": "bt", "execution": "",
          "output_mode": ""}


def _id_safe(value: Any) -> str:
    # Run ids become paths and shell words: keep letters, digits and dots only
    # (local[2] -> local2).
    return re.sub(r"[^A-Za-z0-9.]+", "", str(value))


def _short(key: str) -> str:
    return _SHORT.get(key, key.replace("_", ""))


# ------------------------------------------------------------- the experiment matrix
# config["experiments"] (schema: config/schema.yaml) names groups of runs. Each group is
# the cartesian product pipelines x processes x rates_eps x vary (pipeline settings).
# Runs at multiples of a pipeline's sustainable throughput t_h ("at_threshold") get their
# rate only once the t_h search has finished: their spec carries ``rate_of`` instead of
# a rate, and scripts/run_experiment.py fills it in from the search result file.
GROUPS: tuple[str, ...] = ("baseline", "event_time", "parallelism", "watermark_delay", "knobs")
AT_THRESHOLD = "at_threshold"


def _combinations(vary: dict[str, list[Any]] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Settings of each run of a block: the cartesian product of a mapping
    setting -> values, or the explicit list of mappings; [{}] when nothing varies."""
    if not vary:
        return [{}]
    if isinstance(vary, list):
        return [dict(v) for v in vary]
    combos: list[dict[str, Any]] = [{}]
    for key in sorted(vary):
        combos = [{**c, key: value} for c in combos for value in vary[key]]
    return combos


def _check_vary(config: dict[str, Any], where: str, pipeline: str, key: str) -> None:
    # A typo in a varied setting would otherwise run the default silently.
    section = config.get(pipeline)
    if isinstance(section, dict) and section and key not in section:
        from sdsbench.config import ConfigError

        raise ConfigError(
            f"config key {where}.vary.{key}: pipeline {pipeline} "
            f"has no setting {key!r} (its settings: {sorted(section)})"
        )


def _group_specs(config: dict[str, Any], group: str) -> list[dict[str, Any]]:
    specs = []
    for i, block in enumerate(config["experiments"]["groups"].get(group) or []):
        combos = _combinations(block.get("vary"))
        for pipeline in block["pipelines"]:
            for key in {k for c in combos for k in c}:
                _check_vary(config, f"experiments.groups.{group}.{i}", pipeline, key)
            for process in block["processes"]:
                for rate in block["rates_eps"]:
                    for params in combos:
                        for rep in range(1, repetitions_of(config, block) + 1):
                            specs.append(make_spec(config, pipeline, process, rate, params,
                                                   duration_s=block.get("duration_s"),
                                                   repetition=rep))
    return specs


# ------------------------------------------------------------- the faults group
# config["experiments"]["faults"]: blocks of pipelines x processes x rates_eps x vary, each
# run once without a fault (the reference) and once per injection ("<id>-kill",
# "<id>-brokerrestart", "<id>-malformed"). The reference is the matrix run with the same
# spec when the groups have one (e.g. a3-spp-r20000 of event_time: the same run, not run
# twice), else a run of its own, "<id>-nofault". A faulted run has the seed of its
# reference, so both send the same events; its spec names the reference
# (``reference_run``). Fault runs carry ``fault`` (sdsbench.faults), malformed-input runs
# ``malformed`` (the generator's bad-record settings).
FAULTS = "faults"
INJECTION_SUFFIX = {"kill_sut": "kill", "broker_restart": "brokerrestart",
                    "malformed": "malformed", "broker_kill": "killbroker"}
REFERENCE_SUFFIX = "nofault"


def _fault_specs(config: dict[str, Any]) -> list[dict[str, Any]]:
    from sdsbench.config import ConfigError

    faults = config["experiments"].get(FAULTS) or {}
    duration = float(faults.get("duration_s") or config["run"]["duration_s"])
    matrix = {spec["run_id"]: spec for group in GROUPS for spec in _group_specs(config, group)}
    specs: list[dict[str, Any]] = []
    for i, block in enumerate(faults.get("blocks") or []):
        where = f"experiments.faults.blocks.{i}"
        combos = _combinations(block.get("vary"))
        for pipeline in block["pipelines"]:
            for key in {k for c in combos for k in c}:
                _check_vary(config, where, pipeline, key)
            for process in block["processes"]:
                for rate in block["rates_eps"]:
                    for params in combos:
                        ref = make_spec(config, pipeline, process, rate, params,
                                        duration_s=duration)
                        base = ref["run_id"]
                        if matrix.get(base) != ref:
                            ref["run_id"] = f"{base}-{REFERENCE_SUFFIX}"
                            ref["base_run_id"] = ref["run_id"]
                        specs.append(ref)
                        for j, inj in enumerate(block["injections"]):
                            specs.append(_injected_spec(ref, base, inj,
                                                        f"{where}.injections.{j}"))
    unique: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec["run_id"] in unique and unique[spec["run_id"]] != spec:
            raise ConfigError(f"config key experiments.faults: run {spec['run_id']} defined "
                              "twice with different injections (one injection of a kind per "
                              "pipeline, process, rate and settings)")
        unique[spec["run_id"]] = spec
    return list(unique.values())


def _injected_spec(
    ref: dict[str, Any], base: str, injection: dict[str, Any], where: str
) -> dict[str, Any]:
    from sdsbench.config import ConfigError

    kind = injection["kind"]
    spec = json.loads(json.dumps(ref))
    suffix = INJECTION_SUFFIX[kind]
    if kind == "broker_kill":  # -killbroker-leader, -killbroker-controller
        suffix += f"-{injection.get('target', 'leader')}"
    spec["run_id"] = spec["base_run_id"] = f"{base}-{suffix}"
    spec["reference_run"] = ref["run_id"]
    if kind == "malformed":
        spec["malformed"] = {"fraction": float(injection["fraction"]),
                             "kinds": list(injection["kinds"])}
        return spec
    if spec["pipeline"] == "a1":
        raise ConfigError(f"config key {where}: a1 owns its generator (no SUT to kill "
                          "apart from it, no broker): faults apply to a2, a3, spark, flink")
    at_s = float(injection["at_s"])
    if not 0 < at_s < spec["duration_s"]:
        raise ConfigError(f"config key {where}.at_s: {at_s} must lie inside the run "
                          f"(0, {spec['duration_s']:g}) s")
    spec["fault"] = {k: v for k, v in injection.items()
                     if k in ("kind", "at_s", "down_s", "target")}
    return spec


def threshold_run_id(pipeline: str, process: str, multiple: float) -> str:
    return f"{pipeline}-{process}-th{multiple:g}x"


def search_id(pipeline: str, process: str) -> str:
    return f"{pipeline}-{process}"


def expand_runs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every run of the profile, by run id (see the module docstring for a spec).

    Runs of several groups that are the same run (same id) are run once. Runs at a
    multiple of t_h have ``arrival.rate_eps = None`` and ``rate_of =
    {"search": <search id>, "multiple": k}``.
    """
    runs: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        for spec in _group_specs(config, group):
            runs.setdefault(spec["run_id"], spec)
    for spec in _fault_specs(config):
        runs[spec["run_id"]] = spec
    for spec in _threshold_specs(config):
        runs[spec["run_id"]] = spec
    return runs


def _threshold_specs(config: dict[str, Any]) -> list[dict[str, Any]]:
    at = config["experiments"][AT_THRESHOLD]
    specs = []
    for pipeline in at["pipelines"]:
        for multiple in at["multiples"]:
            for rep in range(1, repetitions_of(config, at) + 1):
                run_id = threshold_run_id(pipeline, at["process"], multiple)
                spec = make_spec(config, pipeline, at["process"], 0, run_id=run_id,
                                 duration_s=at.get("duration_s"), repetition=rep)
                spec["arrival"]["rate_eps"] = None
                spec["seed"] = workload_seed(config, at["process"], f"{multiple:g}x t_h",
                                             spec["duration_s"], rep)
                # Beside the arrival, not in it: the generator accepts only arrival keys it
                # knows.
                spec["rate_of"] = {
                    "search": search_id(pipeline, at["search_process"]),
                    "multiple": float(multiple),
                }
                specs.append(spec)
    return specs


def run_groups(config: dict[str, Any]) -> dict[str, list[str]]:
    """Run ids of each group (a run may belong to several), plus ``at_threshold``."""
    groups: dict[str, list[str]] = {
        # Blocks of a group may share a run (each sweep's default point): listed once.
        group: list(dict.fromkeys(spec["run_id"] for spec in _group_specs(config, group)))
        for group in GROUPS
    }
    groups[AT_THRESHOLD] = [spec["run_id"] for spec in _threshold_specs(config)]
    groups[FAULTS] = [spec["run_id"] for spec in _fault_specs(config)]
    return groups


def searches(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sustainable-throughput searches of the profile: search id -> {pipeline, process}.
    Searches that at_threshold runs need are always included."""
    search = config["search"]
    out = {
        search_id(p, proc): {"pipeline": p, "process": proc}
        for p in search["pipelines"]
        for proc in search["processes"]
    }
    at = config["experiments"][AT_THRESHOLD]
    for p in at["pipelines"]:
        out.setdefault(search_id(p, at["search_process"]),
                       {"pipeline": p, "process": at["search_process"]})
    return out


def resolve_threshold_rate(spec: dict[str, Any], search_result: dict[str, Any]) -> dict[str, Any]:
    """Fill in the rate of an at-threshold run from its search's result.

    When the search found no sustainable rate, the run uses the lowest rate the search
    tried (recorded as ``rate_basis``) so the stress experiment still shows what happens.
    """
    spec = json.loads(json.dumps(spec))
    rate_of = spec["rate_of"]
    th = search_result.get("t_h_eps")
    if th:
        basis, base_rate = "t_h", float(th)
    else:
        basis, base_rate = "lowest rate tried (no sustainable rate found)", float(
            search_result["lowest_rate_tried_eps"]
        )
    spec["arrival"]["rate_eps"] = round(base_rate * float(rate_of["multiple"]))
    spec["rate_basis"] = basis
    return spec


# ------------------------------------------------------------- what a run depends on
def run_settings(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Everything a run's result depends on besides code and its spec. The workflow
    passes it as a rule parameter, so changing any of it reruns exactly the runs it
    affects (a pipeline's section only that pipeline's runs)."""
    # run.load_cpus at its default (null) is left out: results recorded before the key
    # existed had no split either, and must not rerun.
    run = {k: v for k, v in config["run"].items() if not (k == "load_cpus" and v is None)}
    return {
        "pipeline": pipeline_params(config, spec),
        "workload": config["workload"],
        "run": run,
        "partitions": config["services"]["kafka"]["partitions"],
        **cluster_settings(config),
    }


def cluster_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The clusters the services run (config/cluster.yaml), as run settings: empty for a
    single broker and no engine cluster, so the other profiles' runs keep their settings."""
    services = config["services"]
    kafka = services["kafka"]
    out: dict[str, Any] = {}
    if int(kafka.get("nodes", 1)) > 1:
        out["kafka_cluster"] = {"nodes": kafka["nodes"],
                                "min_insync_replicas": kafka.get("min_insync_replicas", 1)}
    for engine, size in (("flink", "taskmanagers"), ("spark", "workers")):
        if int((services.get(engine) or {}).get(size, 0)) > 0:
            out[f"{engine}_cluster"] = services[engine]
    return out


def search_settings(config: dict[str, Any], pipeline: str, process: str) -> dict[str, Any]:
    """What a t_h search depends on besides code (see ``run_settings``)."""
    spec = make_spec(config, pipeline, process, 1)
    # Not the repetition count: adding a repetition must not rerun the others.
    search = {k: v for k, v in config["search"].items() if k != "repetitions"}
    return {"search": search, "process": process,
            "warmup_s": config["experiments"]["warmup_s"], **run_settings(config, spec)}
