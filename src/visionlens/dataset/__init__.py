"""Dataset views: one streaming pass over an image collection (`run_pass`), and the views on
what it stored: nearest neighbours, 2-D maps of feature space, maximally activating patches
(`neighbors`, `embed`, `top_patches`, whose home is `visionlens.dataset.views`)."""

from .engine import PIXELS, PREDICTIONS, CacheError, PassResult, TopK, default_cache_dir, run_pass
from .sources import Collection, DatasetError, open_dataset
from .views import Embedding, Neighbors, Patch, embed, neighbors, top_patches

__all__ = [
    "PIXELS",
    "PREDICTIONS",
    "CacheError",
    "Collection",
    "DatasetError",
    "Embedding",
    "Neighbors",
    "PassResult",
    "Patch",
    "TopK",
    "default_cache_dir",
    "embed",
    "neighbors",
    "open_dataset",
    "run_pass",
    "top_patches",
]
