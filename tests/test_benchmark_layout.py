"""The benchmark package's layout: modules run with python -m, import each other without a circle, patch no path."""

import ast
from pathlib import Path

from conftest import ROOT, run_module

SOURCES = sorted((ROOT / "benchmark").rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SOURCES}


def benchmark_imports(path: Path) -> set[str]:
    """The benchmark modules `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES and name != "benchmark"} - {module_name(path)}


def circle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """An import path that leads from `start` back to it, if there is one."""
    stack = [[start]]
    while stack:
        path = stack.pop()
        for name in graph[path[-1]]:
            if name == start:
                return [*path, name]
            if name not in path:
                stack.append([*path, name])
    return None


def test_the_benchmark_modules_import_each_other_without_a_circle():
    graph = {name: benchmark_imports(path) for name, path in MODULES.items()}
    assert "benchmark.grid" in graph["benchmark.ray_grid"] and "benchmark.grid" in graph["benchmark.run"]
    assert "benchmark.run" not in graph["benchmark.ray_grid"]  # the backends share benchmark.grid, not each other
    for name in graph:
        assert circle_from(name, graph) is None, " -> ".join(circle_from(name, graph))


def test_no_module_of_the_benchmark_or_the_tests_patches_sys_path():
    for path in [*SOURCES, *sorted((ROOT / "tests").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            patched = isinstance(node, ast.Attribute) and node.attr == "path"
            assert not (patched and isinstance(node.value, ast.Name) and node.value.id == "sys"), path


def test_the_grid_runs_as_a_module(tmp_path):
    args = ["--tasks", "simple_spread", "--seeds", "1", "--bits", "0", "--workers", "0"]  # print the commands only
    result = run_module("benchmark.run", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scripts = [command.split()[1] for command in result.stdout.splitlines()]
    assert scripts == [str(ROOT / name) for name in ("ctedd_global.py", "ctedd_distill.py", "maddpg.py")]
