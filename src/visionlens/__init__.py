"""visionlens: see inside PyTorch vision models.

`import visionlens as vl` gives the whole toolkit; names are imported on first use (PEP 562), so
importing the package does not import torch.

- models and images: `load_model`, `Model`, `Preprocessing`, `as_model`, `load_image`,
  `image_tensor`, `sample_image`, `sample_names`
- layers: `layer_table`, `LayerInfo`, `resolve_layer`, `last_spatial_layer`, `layer_channels`,
  `receptive_fields`, `Probe`
- looking: `activations`, `filters`, `classify`
- attribution: `saliency`, `smoothgrad`, `guided_backprop`, `gradcam`, `guided_gradcam`,
  `integrated_gradients`, `cam` (the CAM family by name), `attention_rollout`, `attention_maps`,
  `occlusion`, `occlusion_windows`, `occlusion_stream`, `evaluate` (which map to trust)
- synthesis: `visualize`, `dream`, `invert`, `gram_matrix`, `texture`, `style_transfer`,
  `synthesize`, `objectives`, `Result`
- dataset views: `open_dataset`, `run_pass`, `PassResult`, `neighbors`, `embed`, `top_patches`
- report: `build_report`
- notebooks: `show` (draws any result), `explain`, `Explanation` (a map with its context)
- errors: `VisionlensError`

Subpackages: `vl.attribution`, `vl.synthesis`, `vl.dataset`, `vl.report`.

Input convention: every function that takes images takes the model's input, as
`model.prepare(...)` makes it (`model.to_input(pictures)` converts pictures in [0, 1]); every
function that makes pictures returns RGB in [0, 1] (`model.to_image(x)` converts back).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (relative to this package)
_NAMES: dict[str, str] = {
    # models and images
    "load_model": ".loading",
    "Model": ".models",
    "Preprocessing": ".models",
    "as_model": ".models",
    "load_image": ".images",
    "image_tensor": ".images",
    "sample_image": ".images",
    "sample_names": ".images",
    # layers
    "layer_table": ".layers",
    "LayerInfo": ".layers",
    "last_spatial_layer": ".layers",
    "layer_channels": ".layers",
    "resolve_layer": ".probe",
    "Probe": ".probe",
    "receptive_fields": ".fields",
    # looking
    "activations": ".inspection",
    "filters": ".inspection",
    "classify": ".inspection",
    # attribution
    "saliency": ".attribution",
    "smoothgrad": ".attribution",
    "guided_backprop": ".attribution",
    "gradcam": ".attribution",
    "guided_gradcam": ".attribution",
    "occlusion": ".attribution",
    "occlusion_windows": ".attribution",
    "occlusion_stream": ".attribution",
    "attention_rollout": ".attribution",
    "attention_maps": ".attribution",
    "integrated_gradients": ".attribution",
    "cam": ".attribution",
    "evaluate": ".attribution",
    # synthesis
    "visualize": ".synthesis.recipes",
    "dream": ".synthesis.recipes",
    "invert": ".synthesis.recipes",
    "gram_matrix": ".synthesis.recipes",
    "texture": ".synthesis.recipes",
    "style_transfer": ".synthesis.recipes",
    "synthesize": ".synthesis.engine",
    "Result": ".synthesis.engine",
    # dataset views
    "open_dataset": ".dataset.sources",
    "run_pass": ".dataset.engine",
    "PassResult": ".dataset.engine",
    "neighbors": ".dataset.views",
    "embed": ".dataset.views",
    "top_patches": ".dataset.views",
    # report
    "build_report": ".report.build",
    # notebooks
    "show": ".display",
    "explain": ".explanation",
    "Explanation": ".explanation",
    # errors
    "VisionlensError": ".errors",
}
_SUBPACKAGES = ("attribution", "dataset", "report", "synthesis")
_MODULES = {"objectives": ".synthesis.objectives"}  # modules offered as names

# the public names, as a literal list for type checkers and linters (a test checks it against _NAMES)
__all__ = [
    "Explanation",
    "LayerInfo",
    "Model",
    "PassResult",
    "Preprocessing",
    "Probe",
    "Result",
    "VisionlensError",
    "activations",
    "as_model",
    "build_report",
    "attention_maps",
    "cam",
    "evaluate",
    "integrated_gradients",
    "attention_rollout",
    "classify",
    "dream",
    "embed",
    "explain",
    "filters",
    "gradcam",
    "gram_matrix",
    "guided_backprop",
    "guided_gradcam",
    "image_tensor",
    "invert",
    "last_spatial_layer",
    "layer_channels",
    "layer_table",
    "load_image",
    "load_model",
    "neighbors",
    "objectives",
    "occlusion",
    "occlusion_windows",
    "occlusion_stream",
    "open_dataset",
    "receptive_fields",
    "resolve_layer",
    "run_pass",
    "saliency",
    "sample_image",
    "sample_names",
    "show",
    "smoothgrad",
    "style_transfer",
    "synthesize",
    "texture",
    "top_patches",
    "visualize",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a subpackage) on first use and keep it in the module."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name], __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name], __name__)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})


if "IPython" in sys.modules:  # in a notebook, results draw themselves (nothing heavy imported here)
    from ._ipython import register as _register_drawings

    _register_drawings()


if TYPE_CHECKING:
    from . import attribution as attribution
    from . import dataset as dataset
    from . import report as report
    from . import synthesis as synthesis
    from .attribution import (
        attention_maps,
        attention_rollout,
        cam,
        evaluate,
        gradcam,
        guided_backprop,
        guided_gradcam,
        integrated_gradients,
        occlusion,
        occlusion_stream,
        occlusion_windows,
        saliency,
        smoothgrad,
    )
    from .dataset.engine import PassResult, run_pass
    from .dataset.sources import open_dataset
    from .dataset.views import embed, neighbors, top_patches
    from .display import show
    from .errors import VisionlensError
    from .explanation import Explanation, explain
    from .fields import receptive_fields
    from .images import image_tensor, load_image, sample_image, sample_names
    from .inspection import activations, classify, filters
    from .layers import LayerInfo, last_spatial_layer, layer_channels, layer_table
    from .loading import load_model
    from .models import Model, Preprocessing, as_model
    from .probe import Probe, resolve_layer
    from .report.build import build_report
    from .synthesis import objectives
    from .synthesis.engine import Result, synthesize
    from .synthesis.recipes import dream, gram_matrix, invert, style_transfer, texture, visualize
