"""Guided backpropagation (Springenberg et al. 2015), Grad-CAM (Selvaraju et al. 2017) and
their product, Guided Grad-CAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layers import last_spatial_layer, map_layout
from ..models import Model, as_model
from ..probe import Probe
from ._common import Target, input_gradient


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


def gradcam(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
) -> torch.Tensor:
    """Grad-CAM: ReLU(sum_c w_c A_c) with w_c the spatial mean of d score / d A_c at
    `layer` (default: the last spatial layer), bilinearly upsampled to the input size.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        layer: dotted name of a layer with a (C, h, w) output; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: explain the target's probability instead of its logit.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea")
        >>> vl.gradcam(model, x).shape, vl.gradcam(model, x, layer="blocks.5", upsample=False).shape
        (torch.Size([1, 224, 224]), torch.Size([1, 7, 7]))
    """
    model = as_model(model)
    layer = layer or last_spatial_layer(model, x.shape[-1])
    _, _, cap = input_gradient(model, x, target, softmax, layers=[layer], need_input=False)
    layout = map_layout(model, layer)  # channels-first, channels-last or tokens: all become (B, C, h, w)
    act, grad = (layout.to_nchw(t, (x.shape[-2], x.shape[-1])) for t in cap[layer])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1))
    if upsample:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam


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
