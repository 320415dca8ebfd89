"""List the public definitions of a package that have no docstring, and the `__all__` entries
whose docstring lacks the full form. Prints nothing and exits 0 when there is nothing to fix:

    .venv/bin/python scripts/check_docstrings.py            # src/visionlens, cli modules left out
    .venv/bin/python scripts/check_docstrings.py path/to/pkg

Public means: the module itself, and every class, function and method (of a public class) whose
name does not start with an underscore; functions nested in functions, `@overload` stubs and
property setters are not counted. The full form, for what any `__all__` names:

- a function: `Args:` (when it takes any), `Returns:` (or `Yields:`; not when it returns None)
  and `Example:`;
- a class: `Args:` or `Attributes:`, and `Example:`;
- a constant (a string literal right after the assignment) or a module: `Example:`.

Nothing is imported: the script reads the source with `ast`, and follows `from ... import`
statements (also under `if TYPE_CHECKING:`) and `{"name": "module"}` tables of lazy
`__init__`s to find where each `__all__` entry is defined.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "src" / "visionlens"
SECTION = re.compile(r"^\s*(Args|Arguments|Returns|Yields|Attributes|Examples?):\s*$", re.MULTILINE)


def is_cli(rel: Path) -> bool:
    """Whether a module path (relative to the package root) belongs to the command line."""
    parts = rel.with_suffix("").parts
    return any(p == "cli" or p.startswith("cli_") for p in parts)


@dataclass
class Module:
    """One parsed source file: its dotted name, path and syntax tree."""

    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        """Whether this is a package's `__init__.py`."""
        return self.path.name == "__init__.py"


def load_modules(root: Path, exclude_cli: bool = True) -> dict[str, Module]:
    """Parse every module under the package folder `root`, keyed on its dotted name."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if exclude_cli and is_cli(rel):
            continue
        parts = [root.name, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return modules


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    names = set()
    for d in node.decorator_list:
        d = d.func if isinstance(d, ast.Call) else d
        if isinstance(d, ast.Attribute):
            names.add(d.attr)
        elif isinstance(d, ast.Name):
            names.add(d.id)
    return names


def _public_defs(body: Sequence[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("_") or _decorator_names(node) & {"overload", "setter", "deleter"}:
                continue
            yield f"{prefix}{node.name}", node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield f"{prefix}{node.name}", node
            yield from _public_defs(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.If):  # definitions under `if sys.version_info...:` / TYPE_CHECKING
            yield from _public_defs(node.body + node.orelse, prefix)


def missing_docstrings(modules: dict[str, Module]) -> list[str]:
    """One line per public module, class, function or method without a docstring."""
    out = []
    for mod in modules.values():
        if not ast.get_docstring(mod.tree):
            out.append(f"{mod.path}:1: module {mod.name} has no docstring")
        for qual, node in _public_defs(mod.tree.body, ""):
            assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if not ast.get_docstring(node):
                out.append(f"{mod.path}:{node.lineno}: {mod.name}.{qual} has no docstring")
    return out


def _resolve_from(mod: Module, level: int, target: str | None) -> str:
    """The dotted name a `from <level dots><target> import ...` in `mod` refers to."""
    if level == 0:
        return target or ""
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _all_names(mod: Module) -> list[str] | None:
    for node in mod.tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        value = getattr(node, "value", None)
        if value is not None and any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return [str(v) for v in ast.literal_eval(value)]
    return None


@dataclass
class Definition:
    """Where an `__all__` entry is defined: a module, or a node (with its docstring) in one."""

    module: Module
    node: ast.AST | None  # None: the entry is the module itself
    docstring: str | None


def _attribute_docstring(body: Sequence[ast.stmt], i: int) -> str | None:
    if i + 1 < len(body):
        nxt = body[i + 1]
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            return nxt.value.value
    return None


def find_definition(
    modules: dict[str, Module], modname: str, name: str, seen: frozenset[str] = frozenset()
) -> Definition | None:
    """Follow re-exports from `modname` to the definition of `name`; None when it is not found."""
    key = f"{modname}:{name}"
    mod = modules.get(modname)
    if mod is None or key in seen:
        return None
    seen = seen | {key}
    body = mod.tree.body
    for i, node in enumerate(body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            if "overload" not in _decorator_names(node):  # the implementation carries the docstring
                return Definition(mod, node, ast.get_docstring(node))
            continue
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return Definition(mod, node, _attribute_docstring(body, i))
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve_from(mod, node.level, node.module)
            for alias in node.names:
                if (alias.asname or alias.name) != name:
                    continue
                found = find_definition(modules, source, alias.name, seen)
                if found is not None:
                    return found
        elif isinstance(node, ast.Dict):  # a lazy table: {"name": ".module" or "visionlens.module"}
            for k, v in zip(node.keys, node.values, strict=True):
                if not (isinstance(k, ast.Constant) and k.value == name):
                    continue
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    source = v.value
                elif isinstance(v, ast.Tuple) and v.elts and isinstance(v.elts[0], ast.Constant):
                    source = str(v.elts[0].value)  # ("module", "attribute")
                else:
                    continue
                source = _lazy_source(modules, mod, source)
                found = find_definition(modules, source, name, seen)
                if found is None and source in modules and source.rsplit(".", 1)[-1] == name:
                    found = _module_definition(modules[source])  # {"synthesis": ".synthesis"}
                if found is not None:
                    return found
    if f"{modname}.{name}" in modules:  # a submodule: `from . import objectives`
        return _module_definition(modules[f"{modname}.{name}"])
    return None


def _lazy_source(modules: dict[str, Module], mod: Module, source: str) -> str:
    """The dotted module name a lazy table's value names: relative, absolute or package-relative."""
    if source.startswith("."):
        dots = len(source) - len(source.lstrip("."))
        return _resolve_from(mod, dots, source.lstrip(".") or None)
    top = mod.name.split(".")[0]
    return f"{top}.{source}" if f"{top}.{source}" in modules else source


def _module_definition(mod: Module) -> Definition:
    return Definition(mod, None, ast.get_docstring(mod.tree))


def _is_dataclass_like(node: ast.ClassDef) -> bool:
    bases = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases}
    return "dataclass" in _decorator_names(node) or bool(bases & {"NamedTuple", "TypedDict"})


def _takes_arguments(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    a = node.args
    params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    params = [p for p in params if p not in ("self", "cls")]
    return bool(params or a.vararg or a.kwarg)


def _returns_none(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    r = node.returns
    return isinstance(r, ast.Constant) and r.value is None or isinstance(r, ast.Name) and r.id == "None"


def required_sections(definition: Definition) -> list[str]:
    """The sections the full form asks of this definition, each as a set of accepted headers."""
    node = definition.node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        need = []
        if _takes_arguments(node):
            need.append("Args")
        if not _returns_none(node):
            need.append("Returns|Yields")
        return [*need, "Example|Examples"]
    if isinstance(node, ast.ClassDef):
        return ["Attributes|Args" if _is_dataclass_like(node) else "Args|Attributes", "Example|Examples"]
    return ["Example|Examples"]  # a constant or a module


def incomplete_exports(modules: dict[str, Module]) -> list[str]:
    """One line per `__all__` entry that cannot be found or whose docstring lacks a section."""
    out = []
    reported: set[tuple[Path, int]] = set()  # one line per definition exported twice
    for mod in modules.values():
        for name in _all_names(mod) or []:
            where = f"{mod.name}.__all__ entry {name!r}"
            d = find_definition(modules, mod.name, name)
            if d is None:
                out.append(f"{mod.path}:1: {where}: definition not found")
                continue
            line = getattr(d.node, "lineno", 1)
            if (d.module.path, line) in reported:
                continue
            reported.add((d.module.path, line))
            if not d.docstring:
                out.append(f"{d.module.path}:{line}: {where} has no docstring")
                continue
            found = set(SECTION.findall(d.docstring))
            lacking = [alts.split("|")[0] for alts in required_sections(d) if not found & set(alts.split("|"))]
            if lacking:
                out.append(f"{d.module.path}:{line}: {where}: docstring lacks {', '.join(s + ':' for s in lacking)}")
    return out


def check(root: Path, exclude_cli: bool = True) -> list[str]:
    """Every problem found in the package folder `root`, one line each; empty when none."""
    modules = load_modules(root, exclude_cli)
    return missing_docstrings(modules) + incomplete_exports(modules)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the problems (nothing when there are none); exit status 1 when there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT, help="the package folder")
    parser.add_argument("--include-cli", action="store_true", help="also check cli.py, cli_*.py and cli/")
    args = parser.parse_args(argv)
    problems = check(args.root, exclude_cli=not args.include_cli)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
