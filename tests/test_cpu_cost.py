"""Where the CPU goes (issue 14): CPU per event over the steady span, Spark's batch phases,
and the fit that splits a pipeline's CPU into a fixed part and a part per event, checked on
hand-made samples whose answer is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sdsbench.analysis import cpu_cost
from sdsbench.analysis.tables import cpu_table

T0 = 1_000_000


def _rate(eps: float, seconds: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"second": range(seconds), "scheduled": eps, "sent": eps})


def _resources(samples: list[tuple[int, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([(t, scope, -1, name, cpu, 100.0) for t, scope, name, cpu in samples],
                        columns=["time_ms", "scope", "pid", "name", "cpu_percent", "rss_mb"])


def test_cpu_per_event_per_scope_over_the_span_only():
    inside = [(T0 + s * 1000, scope, name, cpu) for s in range(10, 20)
              for scope, name, cpu in (("sut", "", 100.0), ("service", "kafka", 20.0),
                                       ("service", "postgres", 4.0), ("machine", "", 90.0))]
    # A start-up spike before the span must not count.
    outside = [(T0 + s * 1000, "sut", "", 900.0) for s in range(0, 10)]
    out = cpu_cost.steady_cpu(_resources(inside + outside), _rate(20_000.0), T0,
                              T0 + 10_000, T0 + 20_000)
    assert out["cpu_span_eps"] == 20_000.0
    assert out["cpu_sut_core_share"] == pytest.approx(1.0)
    assert out["cpu_sut_us_per_event"] == pytest.approx(50.0)  # 1 core / 20k ev/s
    assert out["cpu_kafka_us_per_event"] == pytest.approx(10.0)
    assert out["cpu_postgres_us_per_event"] == pytest.approx(2.0)


def test_a_scope_never_sampled_is_nan_not_zero():
    out = cpu_cost.steady_cpu(_resources([(T0 + 12_000, "sut", "", 50.0)]), _rate(1000.0),
                              T0, T0 + 10_000, T0 + 20_000)
    assert out["cpu_sut_us_per_event"] == pytest.approx(500.0)
    assert math.isnan(out["cpu_kafka_us_per_event"])
    assert math.isnan(cpu_cost.steady_cpu(None, _rate(1000.0), T0, T0, T0 + 5000)[
        "cpu_sut_us_per_event"])


def test_spark_phases_of_the_batches_in_the_span():
    progress = pd.DataFrame({
        "query": ["ctr"] * 6 + ["other"],
        "batch_time_ms": [T0, T0 + 10_000, T0 + 12_000, T0 + 14_000, T0 + 16_000, T0 + 30_000,
                          T0 + 12_000],
        "num_input_rows": [0, 100, 300, 200, 400, 0, 9],
        "trigger_execution_ms": [900, 10, 30, 20, 40, 900, 1],
        **{f"{p}_ms": [900, 1, 3, 2, 4, 900, 1] for p in cpu_cost.SPARK_PHASES},
        # cumulative JVM counters: batches in the span cost 100, 200, 300, 400 CPU-ms
        "jvm_cpu_ms": [5000, 5100, 5300, 5600, 6000, 9000, 1],
        "codegen_compilations": [40, 41, 41, 41, 41, 50, 0],
    })
    out = cpu_cost.spark_batch_phases(progress, T0 + 10_000, T0 + 20_000)
    assert out["spark_batches_per_s"] == pytest.approx(0.4)  # 4 batches in 10 s
    assert out["spark_batch_input_rows_p50"] == 250.0
    assert out["spark_add_batch_ms_p50"] == 2.5
    assert out["spark_jvm_cpu_ms_per_batch_mean"] == pytest.approx(250.0)
    assert out["spark_codegen_compilations_per_batch_mean"] == pytest.approx(0.25)
    assert "spark_gc_ms_per_batch_mean" not in out  # not recorded: absent, not zero
    assert cpu_cost.spark_batch_phases(None, 0, 1) == {}


def _run(run_id: str, pipeline: str, eps: float, bps: float, share: float,
         params: dict | None = None, **extra) -> dict:
    return {"run_id": run_id, "base_run_id": extra.pop("base", run_id), "pipeline": pipeline,
            "parallelism": 2.0, "params": json.dumps(params or {}), "cpu_span_eps": eps,
            "spark_batches_per_s": bps, "cpu_sut_core_share": share,
            "cpu_sut_us_per_event": share * 1e6 / eps, **extra}


def test_the_fit_recovers_a_known_per_batch_and_per_event_cost():
    # Spark-like: 200 CPU-ms per micro-batch plus 5 CPU-us per event, exactly.
    points = [(20_000, 3.7), (20_000, 0.5), (50_000, 2.5), (30_000, 1.0), (10_000, 4.0)]
    rows = [_run(f"s{i}", "spark", eps, bps, 0.2 * bps + 5e-6 * eps)
            for i, (eps, bps) in enumerate(points)]
    fit = cpu_cost.fit_cost(rows, cpu_cost.regressors_of("spark"))
    assert fit["batches_per_s"] == pytest.approx(200.0)
    assert fit["events_per_s"] == pytest.approx(5.0)
    assert fit["batches_per_s_lo"] == pytest.approx(200.0)  # exact data: no spread
    assert fit["residual_rms"] == pytest.approx(0.0, abs=1e-12)
    assert fit["n_runs"] == 5


def test_the_fit_spread_brackets_its_value_and_needs_enough_runs():
    rng = np.random.default_rng(1)
    rows = [_run(f"f{i}", "flink", eps, math.nan, 0.25 + 3e-6 * eps + rng.normal(0, 0.02))
            for i, eps in enumerate([20_000, 20_000, 20_000, 150_000, 240_000])]
    fit = cpu_cost.fit_cost(rows, cpu_cost.regressors_of("flink"))
    assert fit["fixed_lo"] <= fit["fixed"] <= fit["fixed_hi"]
    assert fit["events_per_s_lo"] <= fit["events_per_s"] <= fit["events_per_s_hi"]
    assert fit["events_per_s"] == pytest.approx(3.0, abs=0.5)
    too_few = cpu_cost.fit_cost(rows[:2], cpu_cost.regressors_of("flink"))
    assert math.isnan(too_few["fixed"]) and too_few["n_runs"] == 2


def test_runs_at_one_rate_give_no_fit_instead_of_an_arbitrary_one():
    # Five runs at 20k ev/s and about the same batch rate: the parts are not separable,
    # whatever least squares would print for them.
    rng = np.random.default_rng(2)
    rows = [_run(f"s{i}", "spark", 20_000 + rng.normal(0, 20), 3.6 + rng.normal(0, 0.05),
                 1.0 + rng.normal(0, 0.02)) for i in range(5)]
    fit = cpu_cost.fit_cost(rows, cpu_cost.regressors_of("spark"))
    assert fit["condition"] > cpu_cost.MAX_CONDITION and fit["n_runs"] == 5
    assert math.isnan(fit["batches_per_s"]) and math.isnan(fit["events_per_s_lo"])
    flink = [_run(f"f{i}", "flink", 20_000 + 10 * i, math.nan, 0.3 + 0.01 * i)
             for i in range(4)]
    assert math.isnan(cpu_cost.fit_cost(flink, cpu_cost.regressors_of("flink"))["fixed"])


def test_the_fit_leaves_out_runs_that_change_the_engine():
    rows = [_run("a", "spark", 20_000, 3.7, 1.0),
            _run("b", "spark", 20_000, 0.5, 0.3, {"trigger_ms": 2000}),
            _run("c", "spark", 20_000, 3.0, 1.1, {"master": "local[1]",
                                                  "shuffle_partitions": 1}),
            _run("d", "flink", 20_000, math.nan, 0.3)]
    assert [r["run_id"] for r in cpu_cost.fit_runs(rows, "spark")] == ["a", "b"]


def test_cpu_table_spreads_repetitions_and_adds_the_scopes():
    rows = [_run(rid, "a3", 20_000, math.nan, share, base="a3-spp-r20000",
                 cpu_kafka_us_per_event=5.0, cpu_postgres_us_per_event=math.nan)
            for rid, share in (("a3-spp-r20000", 0.2), ("a3-spp-r20000-rep2", 0.3),
                               ("a3-spp-r20000-rep3", 0.25))]
    rows.append(_run("outside", "a3", 20_000, math.nan, 9.0))  # in no group of the table
    table = cpu_table(rows, {"event_time": [r["run_id"] for r in rows[:3]]}).set_index("key")
    sut = table.loc["cpu/a3-spp-r20000/sut"]
    assert (sut["median"], sut["lo"], sut["hi"], sut["n"]) == pytest.approx(
        (12.5, 10.0, 15.0, 3))
    total = table.loc["cpu/a3-spp-r20000/total"]
    assert (total["median"], total["lo"], total["hi"]) == pytest.approx((17.5, 15.0, 20.0))
    assert table.loc["cpu/a3-spp-r20000/postgres", "n"] == 0
    assert table.loc["fit/a3/fixed", "n"] == 3  # the run outside the groups is not fitted


def test_the_knobs_group_feeds_the_fit() -> None:
    # The trigger sweep is what separates Spark's per-batch from its per-event cost.
    rows = [_run("s", "spark", 20_000, 3.7, 1.0), _run("s2", "spark", 20_000, 3.0, 0.9),
            _run("t", "spark", 20_000, 0.5, 0.3, {"trigger_ms": 2000}),
            _run("m", "spark", 50_000, 2.5, 1.1)]
    table = cpu_table(rows, {"event_time": ["s", "s2", "m"], "knobs": ["t"]})
    fit = table.set_index("key").loc["fit/spark/batches_per_s"]
    assert fit["n"] == 4 and "t" in fit["runs"].split(";")


def test_real_time_mode_runs_get_cpu_per_event_but_no_micro_batch_phases() -> None:
    rt = {"execution": "real_time", "output_mode": "update", "master": "local[6]",
          "trigger_ms": 5000}
    rows = [_run("s", "spark", 20_000, 3.7, 1.0), _run("r", "spark", 20_000, 0.2, 0.7, rt)]
    table = cpu_table(rows, {"event_time": ["s", "r"]}).set_index("key")
    assert "cpu/r/sut" in table.index and "spark_phase/s/batches_per_s" in table.index
    assert not [k for k in table.index if k.startswith("spark_phase/r/")]
    # Another engine mode: not in the fit of Spark's micro-batch costs.
    assert [r["run_id"] for r in cpu_cost.fit_runs(rows, "spark")] == ["s"]
