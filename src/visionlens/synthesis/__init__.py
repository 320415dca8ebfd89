"""Image synthesis on one engine: feature visualization, DeepDream, inversion, texture, style."""

from . import objectives
from .engine import Result, synthesize

__all__ = ["Result", "objectives", "synthesize"]
