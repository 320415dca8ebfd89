"""Image synthesis on one engine: feature visualization, DeepDream, inversion, texture, style.

The recipes (`visualize`, `dream`, `invert`, `gram_matrix`, `texture`, `style_transfer`) live in
`visionlens.synthesis.recipes`; each is a short call of the one engine, `synthesize`, with
objectives from `visionlens.synthesis.objectives`. Images go in as the model's input
(`model.prepare(...)`); pictures come out in [0, 1] (`Result.images`).
"""

from . import objectives
from .engine import Result, synthesize
from .recipes import GramResult, dream, gram_matrix, invert, style_transfer, texture, visualize

__all__ = [
    "GramResult",
    "Result",
    "dream",
    "gram_matrix",
    "invert",
    "objectives",
    "style_transfer",
    "synthesize",
    "texture",
    "visualize",
]
