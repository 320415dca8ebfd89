"""Attribution: which input pixels matter for a class score. One calling convention:
`method(model, images, target=None, **options) -> tensor`."""

from .attention import attention_layers, attention_maps, attention_rollout, attention_weights
from .guided import gradcam, guided_backprop, guided_gradcam, has_guided_rule
from .occlusion import occlusion, occlusion_windows
from .saliency import saliency, smoothgrad

__all__ = [
    "saliency",
    "smoothgrad",
    "guided_backprop",
    "gradcam",
    "guided_gradcam",
    "has_guided_rule",
    "occlusion",
    "occlusion_windows",
    "attention_rollout",
    "attention_maps",
    "attention_weights",
    "attention_layers",
]
