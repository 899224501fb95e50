"""Where the project's files are: the repository root and the well-known paths below it.

Standard library only: every virtualenv (main, Spark, Flink) imports it.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
