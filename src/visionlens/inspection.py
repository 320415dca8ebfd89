"""Looking at a network directly: layer activations, convolution filters and predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import torch
from torch import nn

from .errors import LayerError
from .layermaps import to_maps
from .layers import first_conv, fit_input, layer_layouts
from .models import Model, as_model
from .probe import Probe, resolve_layer
from .tracing import forward_until, trace


@overload
def activations(model: Model | nn.Module, x: torch.Tensor, layer: str, *, as_map: bool = False) -> torch.Tensor: ...  # type: ignore[overload-overlap]  # a str is a Sequence[str] too; this first overload wins for it
@overload
def activations(
    model: Model | nn.Module, x: torch.Tensor, layer: Sequence[str], *, as_map: bool = False
) -> dict[str, torch.Tensor]: ...


def activations(
    model: Model | nn.Module, x: torch.Tensor, layer: str | Sequence[str], *, as_map: bool = False
) -> torch.Tensor | dict[str, torch.Tensor]:
    """The output of one layer, or of several layers in one forward pass.

    The pass stops after the deepest requested layer and records no autograd graph; the
    results are ordinary tensors (usable as constant targets in a loss). A model that takes
    only one input size gets `x` resized to it.

    Args:
        model: a `Model` or any `nn.Module`.
        x: the network's input, as `model.prepare(...)` makes it, (B, 3, H, W).
        layer: a dotted layer name, or a sequence of them.
        as_map: return map layers as (B, C, H, W) whatever their layout (channels-last
            maps permuted, token grids reshaped without their class/register tokens);
            vectors stay (B, F).

    Returns:
        For one name, its output as the layer returns it (or as a map, see `as_map`). For a
        sequence, a dict from each name to its output.

    Example:
        >>> model = vl.load_model()
        >>> vl.activations(model, model.prepare("chelsea"), "blocks.2").shape
        torch.Size([1, 40, 28, 28])
    """
    model = as_model(model)
    names = [layer] if isinstance(layer, str) else list(layer)
    x = fit_input(model, x.to(model.device))
    with torch.no_grad(), Probe(model.net, names) as probe:
        if len(names) == 1:
            forward_until(model.net, x, names[0])
        else:
            tr = trace(model.net, x[:1])
            forward_until(model.net, x, max(names, key=lambda n: tr.end.get(n, 0)))
        got = {n: probe[n].clone() for n in names}
    if as_map:
        got = to_maps(layer_layouts(model), got, (x.shape[-2], x.shape[-1]))
    return got[layer] if isinstance(layer, str) else got


def strongest_channels(acts: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n channels with the largest mean activation over the batch and space."""
    mean = acts.flatten(2).mean(-1).mean(0) if acts.dim() == 4 else acts.mean(0)
    return mean.argsort(descending=True)[: min(n, mean.numel())]


def filters(model: Model | nn.Module, layer: str | None = None) -> torch.Tensor:
    """A convolution's weights.

    Args:
        model: a `Model` or any `nn.Module`.
        layer: a `nn.Conv2d` layer; default: the first convolution.

    Returns:
        (out_channels, in_channels / groups, kh, kw), detached.

    Example:
        >>> vl.filters(vl.load_model()).shape
        torch.Size([32, 3, 3, 3])
    """
    net = as_model(model).net
    layer = layer or first_conv(net)
    m = resolve_layer(net, layer)
    w = getattr(m, "weight", None)
    if not isinstance(m, nn.Conv2d) or not isinstance(w, torch.Tensor):
        convs = [n for n, c in m.named_modules() if isinstance(c, nn.Conv2d)]
        hint = f"; its convolutions: {', '.join(layer + '.' + c for c in convs[:4])}" if convs else ""
        raise LayerError(f"layer {layer!r} is a {type(m).__name__}, not a Conv2d{hint}")
    return w.detach().clone()


def classify(model: Model | nn.Module, x: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most probable classes of each image.

    Args:
        model: a `Model` or any `nn.Module` that outputs class logits.
        x: the network's input, as `model.prepare(...)` makes it.
        k: how many classes per image.

    Returns:
        (probabilities, class indices), each (B, k), most probable first.

    Example:
        >>> model = vl.load_model()
        >>> probs, classes = vl.classify(model, model.prepare("coffee"))
        >>> model.label(int(classes[0, 0]))
        'espresso'
    """
    model = as_model(model)
    probs = model.logits(x.to(model.device)).softmax(-1)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return top.values, top.indices
