"""The layout's rules: no import circles, no reaching into another module's private names, one
source of generation defaults."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import floatalk
from floatalk.cli import add_option_arguments, build_parser, options_from_args
from floatalk.flow.solvers import SOLVERS
from floatalk.options import SOLVER_NAMES, GenerateOptions

PACKAGE = Path(floatalk.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imports(name: str, path: Path, is_package: bool, modules: dict) -> list[tuple[str, list[str]]]:
    """(imported module, names) of every import statement, at any depth (functions, TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    found.append((f"{target}.{alias.name}", []))
                elif target in modules:
                    found.append((target, [alias.name]))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {target for target, _ in _imports(name, path, pkg, modules) if target != name}
        for name, (path, pkg) in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_two_modules_import_each_other_directly_or_in_a_circle():
    graph = _graph()
    assert len(graph) > 50  # the whole package was scanned
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_circles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    offenders = [
        f"{name} imports {target}.{n}"
        for name, (path, pkg) in modules.items()
        for target, names in _imports(name, path, pkg, modules)
        for n in names
        if n.startswith("_") and not n.endswith("__") and target != name
    ]
    assert offenders == []


def test_cli_generate_defaults_are_the_options_defaults():
    parser = build_parser()
    args = parser.parse_args(["generate", "--image", "x.png", "--audio", "y.wav"])
    assert options_from_args(args) == GenerateOptions()
    args = parser.parse_args(
        ["generate", "--image", "x", "--audio", "y", "--no-crop", "--edit-motion", "3=-1.5", "--size", "64"]
    )
    assert options_from_args(args) == GenerateOptions(crop=False, motion_edits=((3, -1.5),), output_size=64)
    sub = argparse.ArgumentParser()
    add_option_arguments(sub)
    flags = {a.dest for a in sub._actions if a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(GenerateOptions)}


def test_option_solver_names_are_the_solvers():
    assert tuple(SOLVER_NAMES) == tuple(SOLVERS)
