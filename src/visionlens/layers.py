"""Looking at layers directly: the layer table, feature maps, filters and predictions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError
from .models import Model, as_model
from .probe import Probe, ReceptiveField, receptive_fields, resolve_layer, trace


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch dimension
    field: ReceptiveField | None


def layer_table(model: Model | nn.Module, fields: bool = True) -> list[LayerInfo]:
    """Every named module in execution order, with its output shape from one dry-run forward
    and, for spatial outputs, its receptive field on the model's input size."""
    model = as_model(model)
    size = model.preprocessing.input_size
    x = torch.zeros(1, 3, size, size, device=model.device)
    tr = trace(model.net, x)
    modules = dict(model.net.named_modules())
    spatial = [n for n in tr.order if len(tr.shapes.get(n, ())) == 3]
    rfs = receptive_fields(model.net, size, spatial) if fields else {}
    # parents before children, in the order they are called; modules that never ran last
    ordered = sorted(tr.order, key=lambda n: tr.start[n]) + [n for n in modules if n and n not in tr.order]
    return [LayerInfo(n, type(modules[n]).__name__, tr.shapes.get(n), rfs.get(n)) for n in ordered]


def activations(model: Model | nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of `layer` for a batch: (B, C, H, W) for spatial layers, (B, F) otherwise."""
    model = as_model(model)
    with torch.inference_mode(), Probe(model.net, [layer]) as probe:
        model.net(x.to(model.device))
        return probe[layer].clone()


def strongest_channels(acts: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n channels with the largest mean activation over the batch and space."""
    mean = acts.flatten(2).mean(-1).mean(0) if acts.dim() == 4 else acts.mean(0)
    return mean.argsort(descending=True)[: min(n, mean.numel())]


def first_conv(net: nn.Module) -> str:
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise LayerError("the model has no Conv2d layer")


def filters(model: Model | nn.Module, layer: str | None = None) -> torch.Tensor:
    """A convolution's weights (out_channels, in_channels / groups, kh, kw); by default the
    first convolution's."""
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
    """Top-k (probabilities, class indices), each (B, k)."""
    model = as_model(model)
    probs = model.logits(x.to(model.device)).softmax(-1)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return top.values, top.indices
