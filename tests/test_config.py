"""Configuration: bad input fails before anything starts, naming the key."""

import pytest

from sdsbench.config import ConfigError, load_config


def test_default_config_is_valid():
    config = load_config()
    assert config["workload"]["campaigns"] == 10


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"workload": {"disorder": {"fraction": 1.5}}}, "workload.disorder.fraction"),
        ({"workload": {"campaigns": 0}}, "workload.campaigns"),
        ({"workload": {"typo_key": 1}}, "typo_key"),
        ({"services": {"kafka": {"broker": "calfkit"}}}, "services.kafka.broker"),
        (
            {"workload": {"mmpp": {"low_factor": 2.0, "high_factor": 1.0}}},
            "workload.mmpp.low_factor",
        ),
    ],
)
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=override)


def test_missing_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: quick\nseed: 1\n")
    with pytest.raises(ConfigError, match="services"):
        load_config(bad)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
