"""Inside IPython (Jupyter), results draw themselves: `import visionlens` registers drawings
(`visionlens.display.show`) for the result classes by module and class name, so nothing heavy
is imported until a result is shown, and nothing at all outside IPython."""

from __future__ import annotations

import sys
from typing import Any

# (module, class) of the results that draw themselves in a notebook
RESULTS = (
    ("visionlens.synthesis.engine", "Result"),
    ("visionlens.dataset.views", "Neighbors"),
    ("visionlens.dataset.views", "Embedding"),
)


def _html(obj: Any) -> str | None:
    from .display import show

    return show(obj).html


def _png(obj: Any) -> bytes | None:
    from .display import show

    return show(obj).png


def register() -> bool:
    """Register the drawings with the running IPython shell, if there is one.

    Returns:
        True when a shell was found and the drawings registered.
    """
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters:
        return False
    for module, name in RESULTS:
        formatters["text/html"].for_type_by_name(module, name, _html)
        formatters["image/png"].for_type_by_name(module, name, _png)
    return True
