"""Load, merge and validate experiment configuration (config/schema.yaml)."""

from __future__ import annotations

import argparse
import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sdsbench.paths import REPO_ROOT

DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@functools.cache
def section_keys(section: str, schema_path: Path = SCHEMA_PATH) -> tuple[str, ...]:
    """The keys a top-level config section must have (the schema's ``required``)."""
    schema = yaml.safe_load(schema_path.read_text())
    return tuple(schema["properties"][section].get("required", ()))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in (dicts recursively, the rest replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ConfigError naming the first bad key (all problems are listed)."""
    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        _check_semantics(config)
        return
    lines = [f"config key {_key_path(err)}: {err.message}" for err in errors]
    raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def _check_semantics(config: dict[str, Any]) -> None:
    """Checks a JSON schema cannot express."""
    mix = config["workload"]["event_mix"]
    if sum(mix.values()) <= 0:
        raise ConfigError("config key workload.event_mix: weights must not all be zero")
    mmpp = config["workload"]["mmpp"]
    if mmpp["low_factor"] > mmpp["high_factor"]:
        raise ConfigError("config key workload.mmpp.low_factor: must be <= high_factor")


def load_config(
    *paths: str | Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load config files in order (later ones override), apply overrides, validate."""
    files = [Path(p) for p in paths] or [DEFAULT_CONFIG]
    config: dict[str, Any] = {}
    for path in files:
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        config = deep_merge(config, data)
    if overrides:
        config = deep_merge(config, overrides)
    validate_config(config)
    return config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The scripts' configuration options: ``--config`` (repeatable, later files override)
    and ``--overrides`` (JSON merged over them); ``config_from_arguments`` loads them."""
    parser.add_argument("--config", action="append", required=True, help="config file (repeat)")
    parser.add_argument("--overrides", help="JSON merged over the config files")


def config_from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The validated configuration named by ``add_config_arguments``'s options."""
    return load_config(*args.config, overrides=json.loads(args.overrides or "{}"))
