"""Every attribution method by name, each giving a (B, H, W) map of the input's size: the one
table the `evaluate` command, the report and the faithfulness metrics read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import ArgumentError, did_you_mean
from ..models import Model, as_model
from ._common import Target

MapFn = Callable[..., torch.Tensor]


def _gradient(model: Model, x: torch.Tensor, target: Target, **kw: Any) -> torch.Tensor:
    from .saliency import saliency

    return saliency(model, x, target)


def _smoothgrad(model: Model, x: torch.Tensor, target: Target, samples: int = 25, **kw: Any) -> torch.Tensor:
    from .saliency import smoothgrad

    return smoothgrad(model, x, target, samples=samples)


def _guided(model: Model, x: torch.Tensor, target: Target, **kw: Any) -> torch.Tensor:
    from .guided import guided_backprop
    from .integrated import attribution_map

    return attribution_map(guided_backprop(model, x, target))


def _ig(
    model: Model, x: torch.Tensor, target: Target, steps: int = 32, baseline: str = "black", **kw: Any
) -> torch.Tensor:
    from .integrated import attribution_map, integrated_gradients

    attr = integrated_gradients(model, x, target, steps=steps, baseline=baseline)
    assert isinstance(attr, torch.Tensor)
    return attribution_map(attr)


def _occlusion(model: Model, x: torch.Tensor, target: Target, window: int | None = None, **kw: Any) -> torch.Tensor:
    from .occlusion import occlusion

    side = min(x.shape[-2:])
    w = window or max(4, side // 8)
    return occlusion(model, x, target, window=w, stride=max(1, w // 2))


def _rollout(model: Model, x: torch.Tensor, target: Target, **kw: Any) -> torch.Tensor:
    from .attention import attention_rollout

    return attention_rollout(model, x, target)


def _cam(name: str) -> MapFn:
    def run(model: Model, x: torch.Tensor, target: Target, layer: str | None = None, **kw: Any) -> torch.Tensor:
        from .cams import CAMS

        return CAMS[name](model, x, target, layer=layer)

    run.__name__ = name
    return run


GRADIENT_METHODS: dict[str, MapFn] = {
    "gradient": _gradient,
    "smoothgrad": _smoothgrad,
    "guided": _guided,
    "ig": _ig,
}
CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam", "ablationcam", "eigencam")
METHODS: dict[str, MapFn] = {
    **GRADIENT_METHODS,
    **{name: _cam(name) for name in CAM_METHODS},
    "occlusion": _occlusion,
    "rollout": _rollout,
}
"""Every attribution method by name, each `fn(model, x, target, **options) -> (B, H, W)` at the
input's size: gradient, smoothgrad, guided, ig, the CAM family, occlusion, rollout.

Example:
    >>> list(vl.attribution.METHODS)[:4]
    ['gradient', 'smoothgrad', 'guided', 'ig']
"""


def available_methods(model: Model | torch.nn.Module) -> list[str]:
    """The methods that apply to `model`: guided backprop only with ReLU-family activations,
    attention rollout only on ViT-style transformers (plain global attention, not Swin's).

    Args:
        model: a `Model` or `nn.Module`.

    Returns:
        Method names, in the table's order.

    Example:
        >>> from visionlens.attribution.methods import available_methods
        >>> "rollout" in available_methods(vl.load_model()), "guided" in available_methods(vl.load_model())
        (False, True)
    """
    from .attention import rollout_applies
    from .guided import has_guided_rule

    model = as_model(model)
    names = list(METHODS)
    if not has_guided_rule(model):
        names.remove("guided")
    if not rollout_applies(model):
        names.remove("rollout")
    return names


def attribution(
    model: Model | torch.nn.Module, x: torch.Tensor, method: str = "gradcam", target: Target = None, **options: Any
) -> torch.Tensor:
    """The (B, H, W) map of any method by name, at the input's size, >= 0.

    Args:
        model: a `Model` or `nn.Module`.
        x: model input, (B, 3, H, W).
        method: one of `METHODS`: gradient, smoothgrad, guided, ig (Integrated Gradients,
            |attribution| summed over colour), the CAM family (gradcam, gradcam++, hirescam,
            xgradcam, layercam, scorecam, ablationcam, eigencam), occlusion, rollout.
        target: what to explain (any target spec).
        **options: passed to the method: `layer` for the CAMs, `steps` and `baseline` for ig,
            `samples` for smoothgrad, `window` for occlusion.

    Returns:
        (B, H, W) map on the model's device.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.attribution(model, model.prepare("chelsea", size=96), "ig", steps=4).shape
        torch.Size([1, 96, 144])
    """
    fn = METHODS.get(method)
    if fn is None:
        raise ArgumentError(f"unknown method {method!r}{did_you_mean(method, list(METHODS))}")
    return fn(as_model(model), x, target, **options)
