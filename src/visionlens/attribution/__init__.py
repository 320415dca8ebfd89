"""Attribution: which input pixels matter for a score. One calling convention:
`method(model, images, target=None, **options) -> tensor`, where a target is a class (index
or name), a `Contrast`, a `Region` of a segmentation output, a `Similarity` to a reference
embedding, or any callable on the model output (see `targets`); `evaluate` and `metrics`
measure which map to trust."""

from .attention import attention_layers, attention_maps, attention_rollout, attention_weights
from .cams import CAMS, cam, gradcam
from .evaluate import Evaluation, MethodScore, default_methods, evaluate
from .guided import guided_backprop, guided_gradcam, has_guided_rule
from .integrated import attribution_map, integrated_gradients
from .methods import METHODS, attribution, available_methods
from .metrics import Curve, Randomization, cascading_randomization, deletion_insertion, linear_impute, road
from .occlusion import occlusion, occlusion_stream, occlusion_windows
from .saliency import saliency, smoothgrad
from .targets import BoundTarget, Class, Contrast, Function, Region, Similarity, bind

__all__ = [
    "saliency",
    "smoothgrad",
    "guided_backprop",
    "gradcam",
    "guided_gradcam",
    "has_guided_rule",
    "integrated_gradients",
    "attribution_map",
    "cam",
    "CAMS",
    "occlusion",
    "occlusion_windows",
    "occlusion_stream",
    "attention_rollout",
    "attention_maps",
    "attention_weights",
    "attention_layers",
    "attribution",
    "METHODS",
    "available_methods",
    "evaluate",
    "default_methods",
    "Evaluation",
    "MethodScore",
    "deletion_insertion",
    "road",
    "linear_impute",
    "cascading_randomization",
    "Curve",
    "Randomization",
    "bind",
    "BoundTarget",
    "Class",
    "Contrast",
    "Region",
    "Similarity",
    "Function",
]
