"""Where the project's files are: the repository root and the well-known paths below it.

Standard library only: every virtualenv (main, Spark, Flink) imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR_ENV = "SDSBENCH_SERVICES_DIR"


def services_state_dir() -> Path:
    """Where the services of engine runs keep their state: ``$SDSBENCH_SERVICES_DIR`` when
    set (e.g. a second checkout or a test beside a running stack), else ``.run/services``
    of the checkout. Passed explicitly from there on (runner, search, workflow)."""
    value = os.environ.get(SERVICES_DIR_ENV)
    return Path(value).resolve() if value else REPO_ROOT / ".run" / "services"
