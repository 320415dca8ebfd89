"""The Typer app that every face registers its commands on, and the entry point `main`.

A user's mistake (a `VisionlensError`) is one line on stderr and exit status 2, without a
traceback; Ctrl-C is exit status 130. Library errors name Python parameters in backticks
(`window`, `cache_dir`); `main` writes those that are options of the command that ran as its
flags (--window, --cache), and leaves any other backticked text as it is."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence

import typer
import typer.core

from ..errors import VisionlensError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="See inside PyTorch vision models. Every command runs offline on the bundled "
    "ImageNet-pretrained EfficientNet-Lite0 unless --model says otherwise.",
)
"""The `visionlens` command: each face module registers its commands on it.

Example:
    >>> import typer
    >>> from visionlens.cli.app import app
    >>> "saliency" in typer.main.get_command(app).commands
    True
"""

_PYTHON_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def option_flags(command: object) -> dict[str, str]:
    """Each option's Python parameter name and its flag (the first long one): `cache_dir` ->
    `--cache`, `k` -> `-k`."""
    flags: dict[str, str] = {}
    for param in getattr(command, "params", []):
        if isinstance(param, typer.core.TyperOption) and param.name and param.opts:
            flags[param.name] = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return flags


def as_flags(message: str, flags: Mapping[str, str]) -> str:
    """`message` with every backticked Python name in `flags` written as its flag."""
    return _PYTHON_NAME.sub(lambda found: flags.get(found.group(1), found.group(0)), message)


def _invoked(group: object, args: Sequence[str]) -> object | None:
    """The subcommand `args` run (the app takes no options of its own, so it is the first
    word that is not an option)."""
    name = next((a for a in args if not a.startswith("-")), None)
    if name is None or not isinstance(group, typer.core.TyperGroup):
        return None
    return group.commands.get(name)


def _print_error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a `visionlens` command line and exit with its status: 0, 2 for a user's mistake
    (one line on stderr) or a usage error, 130 for Ctrl-C.

    Args:
        argv: the words after `visionlens` (default: `sys.argv[1:]`).

    Example:
        >>> from visionlens.cli import main
        >>> main(["classify", "chelsea", "-k", "1"])  # doctest: +SKIP
        chelsea
           39.3%   282  tiger cat
    """
    args = list(sys.argv[1:] if argv is None else argv)
    group = typer.main.get_command(app)
    try:
        # not standalone: typer returns the exit status (130 for Ctrl-C, 0 after --help)
        status = group.main(args=args, prog_name="visionlens", standalone_mode=False)
    except VisionlensError as e:
        _print_error(as_flags(str(e), option_flags(_invoked(group, args))))
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        status = 130
    except typer.TyperException as e:  # a usage error: typer prints it with the usage line
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:  # pragma: no cover - every usage error typer raises can show itself
            _print_error(str(e))
        sys.exit(getattr(e, "exit_code", 2))
    if status == 130:
        print("interrupted", file=sys.stderr)
    sys.exit(status if isinstance(status, int) else 0)
