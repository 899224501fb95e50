"""The project's source files a script runs: its imports of project modules, followed
through the import graph. The workflow lists them as a rule's code inputs, so editing any
module an analysis, table, figure or paper step runs makes exactly those outputs stale.

Standard library only (``ast``): nothing is imported to find out what imports what.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path

from sdsbench.paths import REPO_ROOT

PROJECT_PACKAGES = ("sdsbench", "engines")


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of project module ``module`` (a package's ``__init__.py``), or None."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def runtime_nodes(tree: ast.AST, module_level_only: bool = False) -> list[ast.AST]:
    """The statements that import at run time: all of them, or those at module level;
    never what sits under ``if TYPE_CHECKING:``."""
    if module_level_only:
        return [n for n in tree.body if not (isinstance(n, ast.If)
                                             and "TYPE_CHECKING" in ast.unparse(n.test))]
    found: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(path: Path, root: Path = REPO_ROOT,
                     module_level_only: bool = False) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (a function's import runs
    when the function does), or at module level only. ``from pkg import name`` counts
    ``pkg.name`` when that is a module, else ``pkg``."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in runtime_nodes(tree, module_level_only):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            # The longest prefix that is a project module: a.b.c -> a.b.c, else a.b, ...
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if module_file(candidate, root) is not None:
                    found.add(candidate)
                    break
    return found


@functools.cache
def _closure(start: tuple[str, ...], root: Path) -> tuple[str, ...]:
    seen: set[Path] = set()
    todo = [Path(p) for p in start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path, root):
            dep = module_file(module, root)
            # A package's modules are imported by name; its __init__ only when named.
            if dep is not None and dep not in seen:
                todo.append(dep)
            parts = module.split(".")
            for end in range(1, len(parts)):  # importing a.b.c runs a/__init__, a/b/__init__
                init = module_file(".".join(parts[:end]), root)
                if init is not None and init not in seen:
                    todo.append(init)
    return tuple(sorted(str(p.relative_to(root)) for p in seen))


def code_inputs(scripts: Iterable[str | Path], modules: Iterable[str] = (),
                root: Path = REPO_ROOT) -> list[str]:
    """Repository-relative paths of ``scripts`` and of every project module they (or the
    extra ``modules``, imported by name at run time) import, transitively."""
    start = [Path(root, s) if not Path(s).is_absolute() else Path(s) for s in scripts]
    for module in modules:
        path = module_file(module, root)
        if path is None:
            raise ValueError(f"no project module {module!r}")
        start.append(path)
    return list(_closure(tuple(str(p.resolve()) for p in start), root.resolve()))
