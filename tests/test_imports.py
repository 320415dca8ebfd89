"""The package's import structure: no import cycles, every module importable on its own, and a
command line that starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import visionlens

PACKAGE = Path(visionlens.__file__).parent


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at `root` and the package's modules it imports, at module
    level or inside functions (`from p import m` counts both `p` and `p.m`)."""
    modules: dict[str, Path] = {}
    for file in root.rglob("*.py"):
        name = ".".join(file.relative_to(root.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = file
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, file in modules.items():
        base = module if file.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")[: len(base.split(".")) - node.level + 1]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                continue
            graph[module] |= {f for f in found if f in modules and f != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph(PACKAGE)
    assert "visionlens.cli.app" in graph["visionlens.cli.inspect"]  # the graph sees the package
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import a  # inside a function: still a cycle\n")
    (pkg / "c.py").write_text("import pkg.a\n")  # depends on the cycle, is not part of it
    (pkg / "sub" / "__init__.py").write_text("from .x import y\n")
    (pkg / "sub" / "x.py").write_text("from .. import sub\ny = 1\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"], ["pkg.sub", "pkg.sub.x"]]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow  # torch and every library the package uses, imported once
def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Each module imported before any other module of the package (torch and the other
    libraries stay loaded between modules, so this takes seconds, not minutes)."""
    done = _python(
        """
        import importlib, pkgutil, sys
        import visionlens

        names = sorted(m.name for m in pkgutil.walk_packages(visionlens.__path__, "visionlens."))
        assert len(names) > 40, names
        failed = []
        for name in names:
            for loaded in [m for m in sys.modules if m == "visionlens" or m.startswith("visionlens.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as e:
                failed.append(f"{name}: {type(e).__name__}: {e}")
        print("\\n".join(failed))
        """
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_command_line_starts_without_torch() -> None:
    """`visionlens --help` and a command's --help import no torch, torchvision, numpy or
    matplotlib: each command imports what it uses when it runs."""
    done = _python(
        """
        import sys
        import visionlens.cli

        for argv in (["--help"], ["saliency", "--help"], ["embed", "--help"]):
            try:
                visionlens.cli.main(argv)
            except SystemExit as e:
                assert e.code == 0, (argv, e.code)
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "numpy", "matplotlib"})
        print("heavy:", heavy, file=sys.stderr)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stderr, done.stderr
