"""Every public definition of visionlens has a docstring, and what `__all__` exports has the full
form (Args / Returns / Example): scripts/check_docstrings.py, and tests of the checker itself."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_docstrings.py"
_spec = importlib.util.spec_from_file_location("check_docstrings", SCRIPT)
assert _spec is not None and _spec.loader is not None
checker = importlib.util.module_from_spec(_spec)
sys.modules["check_docstrings"] = checker  # dataclasses look their module up by name
_spec.loader.exec_module(checker)


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return pkg


SQUARE = '''
def square(x: int) -> int:
    """Square a number.

    Args:
        x: the number.

    Returns:
        x * x.

    Example:
        >>> square(3)
        9
    """
    return x * x
'''


def test_visionlens_is_documented() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert run.stdout == "" and run.returncode == 0, run.stdout + run.stderr


def test_checker_lists_undocumented_definitions(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": '"""A package."""\n',
            "mod.py": """
                def public(x):
                    return x

                def _private(x):
                    return x

                class Thing:
                    def method(self):
                        pass

                    def _helper(self):
                        pass

                class _Hidden:
                    def method(self):
                        pass
            """,
            "cli_extra.py": "def command():\n    pass\n",
        },
    )
    problems = "\n".join(checker.check(pkg))
    assert "module pkg.mod has no docstring" in problems
    assert "pkg.mod.public has no docstring" in problems
    assert "pkg.mod.Thing has no docstring" in problems
    assert "pkg.mod.Thing.method has no docstring" in problems
    assert "_private" not in problems and "_helper" not in problems and "_Hidden" not in problems
    assert "cli_extra" not in problems  # the cli modules are left out by default
    assert "pkg.cli_extra.command has no docstring" in "\n".join(checker.check(pkg, exclude_cli=False))
    assert len(checker.check(pkg)) == 4


def test_checker_asks_the_full_form_of_exports(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": '''
                """A package."""
                from .mod import LIMIT, Box, square, summary_only

                __all__ = ["LIMIT", "Box", "square", "summary_only", "missing"]
            ''',
            "mod.py": textwrap.dedent('''
                """Functions."""
                from dataclasses import dataclass

                LIMIT = 3
                """The largest input.

                Example:
                    >>> square(LIMIT)
                    9
                """

                @dataclass
                class Box:
                    """A box without attributes documented."""

                    size: int

                def summary_only(x: int) -> int:
                    """Only a summary."""
                    return x
            ''')
            + SQUARE,
        },
    )
    problems = checker.check(pkg)
    text = "\n".join(problems)
    assert "'summary_only': docstring lacks Args:, Returns:, Example:" in text
    assert "'Box': docstring lacks Attributes:, Example:" in text
    assert "'missing': definition not found" in text
    assert "'square'" not in text and "'LIMIT'" not in text
    assert len(problems) == 3


def test_checker_follows_lazy_tables_and_submodules(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": '''
                """A lazy package."""
                _LAZY = {"square": ".mod", "sub": ".sub"}
                __all__ = ["square", "sub"]

                def __getattr__(name):
                    raise AttributeError(name)
            ''',
            "mod.py": '"""Functions."""\n' + SQUARE,
            "sub/__init__.py": '"""A subpackage without an example."""\n',
        },
    )
    assert checker.check(pkg) == [f"{pkg / 'sub' / '__init__.py'}:1: pkg.__all__ entry 'sub': docstring lacks Example:"]
    (pkg / "sub" / "__init__.py").write_text('"""A subpackage.\n\nExample:\n    >>> import pkg.sub\n"""\n')
    assert checker.check(pkg) == []
    assert checker.main([str(pkg)]) == 0
