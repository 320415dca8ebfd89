"""Guided backpropagation (Springenberg et al. 2015) and its product with Grad-CAM
(Selvaraju et al. 2017, in `cams`), Guided Grad-CAM."""

from __future__ import annotations

import torch

from ..models import Model, as_model
from ..probe import Probe
from ._common import Target, input_gradient
from .cams import gradcam


def guided_backprop(
    model: Model | torch.nn.Module, x: torch.Tensor, target: Target = None, *, softmax: bool = False
) -> torch.Tensor:
    """Guided backprop: the input gradient with every ReLU / ReLU6 (module or functional,
    inplace or not) passing gradient only where its input is in the open range and the
    gradient is positive. The model itself is not modified.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        softmax: explain the target's probability instead of its logit.

    Returns:
        (B, 3, H, W) signed gradients on the model's device (`render` shows them).

    Example:
        >>> model = vl.load_model()
        >>> vl.guided_backprop(model, model.prepare("chelsea")).shape
        torch.Size([1, 3, 224, 224])
    """
    grad, _, _ = input_gradient(model, x, target, softmax, backward_rule="guided")
    assert grad is not None
    return grad


def has_guided_rule(model: Model | torch.nn.Module) -> bool:
    """Whether guided backprop has anything to act on: a ReLU-family activation (ReLU, ReLU6,
    hardtanh; module or functional) that one forward pass of a zero image runs through.
    GELU and SiLU networks (ConvNeXt, ViT, Swin) have none, and `guided_backprop` refuses them.

    Args:
        model: a `Model` or any `nn.Module`.

    Returns:
        True when at least one activation would take the guided rule.

    Example:
        >>> vl.attribution.has_guided_rule(vl.load_model())
        True
    """
    model = as_model(model)
    size = model.preprocessing.input_size
    x = torch.zeros(1, 3, size, size, device=model.device, requires_grad=True)
    with torch.inference_mode(False), torch.enable_grad(), Probe(model.net, backward_rule="guided") as probe:
        model.net(x)
        return probe.routed > 0


def guided_gradcam(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    softmax: bool = False,
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop multiplied by the upsampled Grad-CAM map.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        layer: the Grad-CAM layer; default: the last spatial one.
        softmax: explain the target's probability instead of its logit.

    Returns:
        (B, 3, H, W) signed map on the model's device.

    Example:
        >>> model = vl.load_model()
        >>> vl.guided_gradcam(model, model.prepare("chelsea"), "tiger cat").shape
        torch.Size([1, 3, 224, 224])
    """
    cam = gradcam(model, x, target, layer=layer, softmax=softmax)
    return guided_backprop(model, x, target, softmax=softmax) * cam[:, None]
