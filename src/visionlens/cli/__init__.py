"""The `visionlens` command line.

`app` holds the Typer app and the entry point `main`; `options` the option groups every
command shares (the model, loaded once) and the output options; `parsing` the small option
languages (unit lists, targets). One module per face registers its commands on the app:
`inspect`, `attribute`, `synthesize`, `dataset`, `report`, `serve`. Imports run one way: faces import
`app`, `options` and `parsing`; only this file imports the faces. Nothing heavy (torch, numpy,
matplotlib) is imported until a command runs, so `visionlens --help` answers at once."""

from __future__ import annotations

# The faces register their commands in this order, which `visionlens --help` shows.
# isort: off
from . import inspect  # noqa: F401
from . import attribute  # noqa: F401
from . import synthesize  # noqa: F401
from . import dataset  # noqa: F401
from . import report  # noqa: F401
from . import serve  # noqa: F401

# isort: on
from .app import main  # the module `app` holds the Typer app itself, `visionlens.cli.app.app`

__all__ = ["main"]
