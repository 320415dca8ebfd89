"""Dataset views: one streaming pass over an image collection (`run_pass`), and the views on
what it stored: nearest neighbours, 2-D maps of feature space, maximally activating patches."""

from .engine import PIXELS, PREDICTIONS, CacheError, PassResult, TopK, default_cache_dir, run_pass
from .sources import Collection, DatasetError, open_dataset

__all__ = [
    "PIXELS",
    "PREDICTIONS",
    "CacheError",
    "Collection",
    "DatasetError",
    "PassResult",
    "TopK",
    "default_cache_dir",
    "open_dataset",
    "run_pass",
]
