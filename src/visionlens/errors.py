"""Errors a user can cause. The CLI prints their one-line message and exits with status 2."""

from __future__ import annotations


class VisionlensError(Exception):
    """A mistake the user can fix: the message says what is wrong and how to fix it."""


class ImageError(VisionlensError):
    """An image path that is missing, unreadable or not an image."""


class ModelError(VisionlensError):
    """A model spec, weights file or checkpoint that cannot be loaded."""


class LayerError(VisionlensError):
    """A layer name that does not exist, or a layer unfit for the request."""


class TargetError(VisionlensError):
    """A class target that is out of range or unknown."""


class ArgumentError(VisionlensError):
    """An option value that makes no sense for the input (a window larger than the image...)."""
