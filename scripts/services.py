#!/usr/bin/env python3
"""Bring the benchmark's services up or down, or show their status: PostgreSQL and Apache
Kafka, and with a config that asks for them (config/cluster.yaml) a Kafka cluster and the
Flink and Spark standalone clusters.

    .venv/main/bin/python scripts/services.py up     [--state-dir DIR] [--config FILE ...]
    .venv/main/bin/python scripts/services.py status [--state-dir ...]
    .venv/main/bin/python scripts/services.py down   [--state-dir ...]

The state dir defaults to .run/services, the config to config/config.yaml. ``up`` reuses a
healthy stack started with the same config and prints the endpoints as JSON.
The config's ``services:`` section decides what runs
(``dsn``/``bootstrap_servers`` set => external server, only health-checked).
Exit code 0 on success, 1 with one error line otherwise (status: 2 unhealthy, 3 none).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sdsbench.services import ServiceError, stack  # noqa: E402

DEFAULT_STATE_DIR = REPO_ROOT / ".run" / "services"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"


def services_section(config_paths: list[Path]) -> dict[str, Any]:
    """Merged ``services:`` section of the config files (later files override)."""
    import yaml

    merged: dict[str, Any] = {}
    for path in config_paths:
        if not path.exists():
            raise ServiceError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        section = data.get("services") or {}
        if not isinstance(section, dict):
            raise ServiceError(f"{path}: services must be a mapping")
        for name, sub in section.items():
            merged.setdefault(name, {}).update(sub or {})
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: .run/services"
    )
    ap.add_argument(
        "--config",
        type=Path,
        action="append",
        help="experiment config (repeatable, later overrides); "
        "default config/config.yaml if present",
    )
    args = ap.parse_args(argv)
    try:
        if args.command == "up":
            paths = args.config or ([DEFAULT_CONFIG] if DEFAULT_CONFIG.exists() else [])
            svc = stack.ensure_services(services_section(paths), args.state_dir)
            print(json.dumps(svc.to_dict(), indent=2, sort_keys=True))
        elif args.command == "down":
            stopped = stack.stop_services(args.state_dir)
            print(f"[services] stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        else:
            svc = stack.load_services(args.state_dir)
            if svc is None:
                print(f"[services] no services recorded in {args.state_dir}")
                return 3
            health = stack.check_services(svc)
            print(
                json.dumps({"services": svc.to_dict(), "health": health}, indent=2, sort_keys=True)
            )
            return 0 if all(v == "ok" for v in health.values()) else 2
    except ServiceError as e:
        print(f"[services] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
