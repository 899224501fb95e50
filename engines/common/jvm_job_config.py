"""What the JVM engines' job configs share: the fields every job has (``JvmJobConfig``)
and the checks of ``JobConfig.from_dict`` (each error names the engine and the bad key).
Standard library only (the engine venvs run it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JvmJobConfig:
    """The fields of every JVM engine job (the engine's JobConfig adds its own)."""

    run_id: str
    bootstrap: str
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    campaigns: int
    ads_per_campaign: int
    jars: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"jars": list(self.jars)}


def check_keys(engine: str, cls: type, data: dict[str, Any],
               optional: Iterable[str] = ()) -> None:
    """No key ``cls`` (a dataclass) does not have; every field but ``optional`` given."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{engine} job config: unknown keys {unknown}")
    missing = sorted(known - set(data) - set(optional))
    if missing:
        raise ValueError(f"{engine} job config: missing keys {missing}")


def check_ints(engine: str, data: dict[str, Any], keys: Iterable[str], minimum: int,
               maximum: int | None = None, nullable: bool = False) -> None:
    """Each of ``keys`` an integer within [minimum, maximum] (or None if ``nullable``)."""
    for key in keys:
        value = data[key]
        if nullable and value is None:
            continue
        if (not isinstance(value, int) or isinstance(value, bool) or value < minimum
                or (maximum is not None and value > maximum)):
            bound = f">= {minimum}" if maximum is None else f"within [{minimum}, {maximum}]"
            raise ValueError(f"{engine} job config key {key}: must be an integer {bound}"
                             + (" or null" if nullable else ""))


def check_choice(engine: str, data: dict[str, Any], key: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if data[key] not in choices:
        raise ValueError(f"{engine} job config key {key}: one of {choices}")


def check_jars(engine: str, jars: Iterable[str]) -> None:
    for jar in jars:
        if not Path(jar).is_file():
            raise ValueError(f"{engine} job config key jars: {jar} does not exist")
