"""Errors a user can cause. The CLI prints their one-line message and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VisionlensError(Exception):
    """A mistake the user can fix: the message says what is wrong and how to fix it.

    The base of every error visionlens raises for bad input (`ImageError`, `ModelError`,
    `LayerError`, `TargetError`, `ArgumentError`, the dataset's `DatasetError` and
    `CacheError`); catch it to handle them all. The CLI prints the message and exits with 2.

    Args:
        message: one line: what is wrong and how to fix it.

    Example:
        >>> try:
        ...     vl.load_image("no-such-photo.jpg")
        ... except vl.VisionlensError as e:
        ...     print(type(e).__name__)
        ImageError
    """


class ImageError(VisionlensError):
    """An image path that is missing, unreadable or not an image.

    Args:
        message: the path, what is wrong with it and what to give instead.

    Example:
        >>> from visionlens.errors import ImageError
        >>> try:
        ...     vl.load_image("no-such-photo.jpg")
        ... except ImageError as e:
        ...     print(str(e).split(":")[0])
        no-such-photo.jpg
    """


class ModelError(VisionlensError):
    """A model spec, weights file or checkpoint that cannot be loaded."""


class LayerError(VisionlensError):
    """A layer name that does not exist, or a layer unfit for the request."""


class TargetError(VisionlensError):
    """A class target that is out of range or unknown."""


class ArgumentError(VisionlensError):
    """An option value that makes no sense for the input (a window larger than the image...)."""


def closest(name: str, choices: Iterable[str], n: int = 4, cutoff: float = 0.6) -> list[str]:
    """The valid names most like `name` (for "did you mean ..." in an error message)."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)


def did_you_mean(name: str, choices: Iterable[str], n: int = 4, cutoff: float = 0.6) -> str:
    """'; did you mean a, b?' naming the closest valid choices, or '' when none is close."""
    close = closest(name, choices, n, cutoff)
    return f"; did you mean {', '.join(close)}?" if close else ""
