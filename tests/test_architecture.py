"""The code's layering: no import cycles, a core every virtualenv can import, services
that import no engine, and module sizes with a reason above ~500 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdsbench.code_deps import imported_modules
from sdsbench.paths import REPO_ROOT

PACKAGES = ("sdsbench", "engines")
# Imported by the engine virtualenvs (Spark, Flink) as well as the main one: the standard
# library only.
CORE = ("sdsbench.paths", "sdsbench.numbers", "sdsbench.contract", "sdsbench.rundir",
        "sdsbench.process_control", "sdsbench.engine_session", "engines.common.jvm_job_config",
        "engines.spark.job_config", "engines.flink.job_config", "engines.flink.ctr_sql",
        "engines.common.passthrough_job", "engines.flink.passthrough_sql")
MAX_LINES = 520


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module-level", "all"])
def test_no_import_cycles(module_level_only: bool) -> None:
    modules = project_modules()
    graph = {name: imported_modules(path, module_level_only=module_level_only) - {name}
             for name, path in modules.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_without_third_party_packages() -> None:
    # -S: no site-packages (numpy, pandas, psycopg, pyspark, ... are not importable).
    code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
            + "; ".join(f"import {m}" for m in CORE)
            + "; import numpy")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    # The core imported; numpy, the check that site-packages really were out of reach, not.
    assert "No module named 'numpy'" in result.stderr, result.stderr


def test_services_and_core_import_no_engine() -> None:
    modules = project_modules()
    for name, path in modules.items():
        if name.startswith(("sdsbench.services", *CORE)) and not name.startswith("engines"):
            engines = {m for m in imported_modules(path) if m.startswith("engines")}
            assert not engines, f"{name} imports {engines}"


def test_long_modules_say_why() -> None:
    long = []
    for name, path in project_modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Why one module" not in text[:3000]:
            long.append(f"{name}: {text.count(chr(10))} lines")
    assert not long, long
