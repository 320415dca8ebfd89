"""visionlens: see inside PyTorch vision models."""

from .attribution import (
    gradcam,
    guided_backprop,
    guided_gradcam,
    occlusion,
    occlusion_windows,
    saliency,
    smoothgrad,
)
from .errors import VisionlensError
from .fields import receptive_fields
from .images import load_image, sample_image, sample_names
from .inspection import activations, classify, filters
from .layers import layer_table
from .loading import load_model
from .models import Model, Preprocessing, as_model
from .probe import Probe, resolve_layer

__version__ = "0.1.0"
__all__ = [
    "Model",
    "Preprocessing",
    "Probe",
    "VisionlensError",
    "activations",
    "as_model",
    "classify",
    "filters",
    "gradcam",
    "guided_backprop",
    "guided_gradcam",
    "layer_table",
    "load_image",
    "load_model",
    "occlusion",
    "occlusion_windows",
    "receptive_fields",
    "resolve_layer",
    "sample_image",
    "sample_names",
    "saliency",
    "smoothgrad",
]
