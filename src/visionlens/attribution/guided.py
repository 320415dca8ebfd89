"""Guided backpropagation (Springenberg et al. 2015), Grad-CAM (Selvaraju et al. 2017) and
their product, Guided Grad-CAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import LayerError
from ..layers import last_spatial_layer
from ..models import Model, as_model
from ._common import Target, input_gradient


def guided_backprop(
    model: Model | torch.nn.Module, x: torch.Tensor, target: Target = None, *, softmax: bool = False
) -> torch.Tensor:
    """(B, 3, H, W): the input gradient with every ReLU / ReLU6 (module or functional, inplace
    or not) passing gradient only where its input is in the open range and the gradient is
    positive. The model itself is not modified."""
    grad, _, _ = input_gradient(model, x, target, softmax, backward_rule="guided")
    return grad


def gradcam(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
) -> torch.Tensor:
    """(B, H, W) Grad-CAM: ReLU(sum_c w_c A_c) with w_c the spatial mean of d score / d A_c at
    `layer` (default: the last spatial layer), bilinearly upsampled to the input size."""
    model = as_model(model)
    layer = layer or last_spatial_layer(model, x.shape[-1])
    _, _, cap = input_gradient(model, x, target, softmax, layers=[layer])
    act, grad = cap[layer]
    if act.dim() != 4:
        raise LayerError(
            f"layer {layer!r} has output shape {tuple(act.shape[1:])}, not a spatial (C, H, W) "
            "map; choose a convolutional layer (see `visionlens layers`)"
        )
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
    """(B, 3, H, W): guided backprop multiplied by the upsampled Grad-CAM map."""
    cam = gradcam(model, x, target, layer=layer, softmax=softmax)
    return guided_backprop(model, x, target, softmax=softmax) * cam[:, None]
