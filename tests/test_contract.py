"""The shared contract: campaign mapping, windows, validation, output record."""

import json

import pytest

from sdsbench import contract


def test_catalog_is_fixed_and_maps_100_ads_per_campaign():
    cat = contract.ad_catalog(10, 100)
    assert cat.n_ads == 1000
    assert len(set(cat.ad_ids)) == 1000
    counts = {}
    for ad in cat.ad_ids:
        counts[cat.campaign_of_ad[ad]] = counts.get(cat.campaign_of_ad[ad], 0) + 1
    assert counts == {c: 100 for c in range(10)}
    # Derived by name, not drawn at random: a second catalog (another process) agrees.
    contract.ad_catalog.cache_clear()
    assert contract.ad_catalog(10, 100).ad_ids == cat.ad_ids


def test_catalog_rejects_empty():
    with pytest.raises(ValueError):
        contract.ad_catalog(0, 100)


@pytest.mark.parametrize(
    ("time_ms", "start"), [(0, 0), (9_999, 0), (10_000, 10_000), (-1, -10_000)]
)
def test_window_start_is_floor(time_ms, start):
    assert contract.window_start_ms(time_ms) == start


def test_event_window_from_ns():
    assert contract.event_window_start_ms(1_700_000_012_345_000_000) == 1_700_000_010_000


def _event(cat, **changes):
    event = {
        "user_id": "u",
        "page_id": "p",
        "ad_id": cat.ad_ids[0],
        "ad_type": "banner",
        "event_type": "view",
        "event_time_ns": 1_700_000_000_000_000_000,
        "insertion_time_ms": 1_700_000_000_000,
    }
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not ...})


NOW_MS = 1_700_000_000_500


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"ad_id": "not-an-ad"}, "unknown_ad"),
        ({"event_type": "hover"}, "bad_event_type"),
        ({"event_time_ns": "soon"}, "bad_type"),
        ({"event_time_ns": True}, "bad_type"),
        ({"user_id": ...}, "missing_field"),
        ({"event_time_ns": -5}, "absurd_timestamp"),
        ({"event_time_ns": (NOW_MS + 3_600_000) * 1_000_000}, "absurd_timestamp"),
    ],
)
def test_validate_event(changes, reason):
    cat = contract.ad_catalog()
    event, got = contract.validate_event(_event(cat, **changes), cat, NOW_MS)
    assert got == reason
    assert (event is None) == (reason is not None)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_validate_rejects_non_objects(raw):
    cat = contract.ad_catalog()
    assert contract.validate_event(raw, cat, NOW_MS) == (None, "not_json")


def test_output_record_round_trip_and_null_ctr():
    rec = contract.output_record("a3", 3, 10_000, views=0, clicks=0, result_time_ms=21_000,
                                 min_insertion_ms=10_001, max_insertion_ms=19_999)
    assert rec["window_end_ms"] == 20_000
    assert rec["ctr"] is None
    parsed = contract.parse_output_record(json.dumps(rec))
    assert tuple(parsed) == contract.OUTPUT_FIELDS
    assert contract.output_record("a3", 3, 0, 4, 1, 0, 0, 0)["ctr"] == 0.25


def test_parse_output_record_names_missing_fields():
    with pytest.raises(ValueError, match="views"):
        contract.parse_output_record(json.dumps({"pipeline": "x"}))
