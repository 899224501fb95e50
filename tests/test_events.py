"""Event drawing and encoding: contract-valid JSON, event mix, disorder, campaign mapping."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from sdsbench import contract
from sdsbench.config import ConfigError, load_config
from sdsbench.workload.events import Disorder, EventFactory

DUE_NS = 1_795_000_000_000_000_000  # a fixed scheduled send time (2026)


@pytest.fixture(scope="module")
def workload() -> dict:
    return load_config()["workload"]


def with_disorder(workload: dict, **disorder) -> dict:
    w = copy.deepcopy(workload)
    w["disorder"].update(disorder)
    return w


def test_json_events_validate_and_match_rows(workload: dict) -> None:
    factory = EventFactory(workload, pool_seed=1)
    cols = factory.draw(np.random.default_rng(2), 2000, DUE_NS)
    insertion_ms = DUE_NS // 1_000_000 + 3
    lines = factory.json_lines(cols, insertion_ms)
    rows = factory.rows(cols, insertion_ms)
    assert len(lines) == len(rows) == 2000
    for line, row in zip(lines, rows, strict=True):
        event, reason = contract.validate_event(line, factory.catalog, insertion_ms)
        assert reason is None
        assert list(event) == list(contract.EVENT_FIELDS)  # exactly the contract's fields
        assert tuple(event[f] for f in contract.EVENT_FIELDS) == row
        assert event["insertion_time_ms"] == insertion_ms
        assert event["ad_type"] in contract.AD_TYPES


def test_campaign_mapping_round_trip(workload: dict) -> None:
    factory = EventFactory(workload, pool_seed=1)
    cols = factory.draw(np.random.default_rng(3), 5000, DUE_NS)
    from_ids = [
        factory.catalog.campaign_of_ad[json.loads(x)["ad_id"]] for x in factory.json_lines(cols, 0)
    ]
    assert from_ids == factory.campaign_of(cols.ad).tolist()
    assert set(from_ids) == set(range(workload["campaigns"]))  # every campaign is drawn


def test_pools_depend_only_on_the_seed(workload: dict) -> None:
    a, b, c = (EventFactory(workload, s) for s in (5, 5, 6))
    assert a.user_ids == b.user_ids and a.page_ids == b.page_ids
    assert a.user_ids != c.user_ids
    assert len(set(a.user_ids)) == len(a.user_ids) == 100


def test_event_type_mix(workload: dict) -> None:
    w = copy.deepcopy(workload)
    w["event_mix"] = {"view": 0.7, "click": 0.2, "purchase": 0.1}
    factory = EventFactory(w, pool_seed=1)
    n = 200_000
    types = factory.draw(np.random.default_rng(4), n, DUE_NS).event_type
    shares = np.bincount(types, minlength=3) / n
    for share, p in zip(shares, (0.7, 0.2, 0.1), strict=True):
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_zero_weight_event_type_is_never_drawn(workload: dict) -> None:
    w = copy.deepcopy(workload)
    w["event_mix"] = {"view": 1, "click": 1, "purchase": 0}
    types = EventFactory(w, 1).draw(np.random.default_rng(5), 100_000, DUE_NS).event_type
    assert set(types.tolist()) == {0, 1}


@pytest.mark.parametrize("distribution", ["uniform", "exponential"])
def test_disorder_fraction_and_delay_bounds(workload: dict, distribution: str) -> None:
    w = with_disorder(
        workload, fraction=0.1, distribution=distribution, max_delay_ms=2000, mean_delay_ms=300
    )
    factory = EventFactory(w, pool_seed=1)
    n = 200_000
    cols = factory.draw(np.random.default_rng(6), n, DUE_NS)
    assert abs(cols.delayed.mean() - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)
    delay_ns = DUE_NS - cols.event_time_ns
    assert np.all(delay_ns[~cols.delayed] == 0)  # on time: event time = send time
    delayed = delay_ns[cols.delayed]
    assert delayed.min() > 0 and delayed.max() <= 2000 * 1_000_000
    delay_ms = delayed / 1e6
    k = len(delay_ms)
    if distribution == "uniform":
        assert abs(delay_ms.mean() - 1000) < 4 * (2000 / math.sqrt(12)) / math.sqrt(k)
        assert delay_ms.max() > 1990
    else:
        # Mean of an exponential(300 ms) truncated at 2000 ms.
        m, b = 300.0, 2000.0
        expected = m - b * math.exp(-b / m) / (1 - math.exp(-b / m))
        assert abs(delay_ms.mean() - expected) < 4 * m / math.sqrt(k)
        assert np.median(delay_ms) == pytest.approx(m * math.log(2), rel=0.05)


def test_no_disorder_means_no_delayed_events(workload: dict) -> None:
    factory = EventFactory(with_disorder(workload, fraction=0.0), pool_seed=1)
    cols = factory.draw(np.random.default_rng(7), 10_000, DUE_NS)
    assert not cols.delayed.any() and np.all(cols.event_time_ns == DUE_NS)


@pytest.mark.parametrize(
    ("disorder", "key"),
    [
        ({"distribution": "pareto"}, "workload.disorder.distribution"),
        ({"fraction": 0.1, "max_delay_ms": 0}, "workload.disorder.max_delay_ms"),
        ({"fraction": 1.5}, "workload.disorder.fraction"),
    ],
)
def test_bad_disorder_is_rejected(workload: dict, disorder: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Disorder.from_workload(with_disorder(workload, **disorder))


def test_missing_event_mix_key_is_named(workload: dict) -> None:
    w = copy.deepcopy(workload)
    del w["event_mix"]["click"]
    with pytest.raises(ConfigError, match=r"workload\.event_mix\.click"):
        EventFactory(w, 1)
