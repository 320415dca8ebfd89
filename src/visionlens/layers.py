"""What a network's layers are: the layer table, and the structural queries every technique
and face asks (the first convolution, the last spatial layer, a layer's channel count,
layers spread over depth). Answers come from one dry-run forward of the network itself,
never from layer names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ArgumentError, LayerError
from .fields import ReceptiveField, receptive_fields
from .models import Model, as_model
from .probe import resolve_layer
from .tracing import Trace, trace


@dataclass(frozen=True)
class LayerInfo:
    """One row of the layer table.

    Attributes:
        name: the dotted module name (`blocks.3.0.conv_pw`).
        type: the module's class name.
        shape: its output shape without the batch dimension; None when it never ran.
        field: its receptive field on the model's input, for spatial outputs.
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    field: ReceptiveField | None


def dry_run(model: Model | nn.Module, input_size: int | None = None) -> Trace:
    """One forward pass of a zero image (default: the model's input size), recording every
    module's call order and output shape."""
    model = as_model(model)
    size = input_size or model.preprocessing.input_size
    return trace(model.net, torch.zeros(1, 3, size, size, device=model.device))


def _is_map(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and len(shape) == 3 and min(shape[1:]) > 1


def layer_table(model: Model | nn.Module, fields: bool = True) -> list[LayerInfo]:
    """Every named module in execution order, with its output shape and its receptive field.

    Args:
        model: a `Model` or any `nn.Module`.
        fields: also measure receptive fields of spatial layers (a few seconds).

    Returns:
        One `LayerInfo` per module, parents before children, modules that never ran last.

    Example:
        >>> table = vl.layer_table(vl.load_model(), fields=False)
        >>> table[0].name, table[0].shape
        ('conv_stem', (32, 112, 112))
    """
    model = as_model(model)
    size = model.preprocessing.input_size
    tr = dry_run(model, size)
    modules = dict(model.net.named_modules())
    spatial = [n for n in tr.order if len(tr.shapes.get(n, ())) == 3]
    rfs = receptive_fields(model.net, size, spatial) if fields else {}
    ordered = sorted(tr.order, key=lambda n: tr.start[n]) + [n for n in modules if n and n not in tr.order]
    return [LayerInfo(n, type(modules[n]).__name__, tr.shapes.get(n), rfs.get(n)) for n in ordered]


def first_conv(net: nn.Module) -> str:
    """The name of the first `nn.Conv2d` in module order (the one that sees pixels)."""
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise LayerError("the model has no Conv2d layer")


def last_spatial_layer(model: Model | nn.Module, input_size: int | None = None) -> str:
    """The last module, in execution order, whose output is a (N, C, H, W) map with H, W > 1
    (the innermost one, when a Sequential just passes its last child's output on): where
    Grad-CAM looks and what the dataset views pool by default."""
    net = as_model(model).net
    tr = dry_run(model, input_size)
    spatial = [n for n in tr.order if _is_map(tr.shapes.get(n))]
    if not spatial:
        raise LayerError("the model has no layer with a spatial (C, H, W) output")
    best = max(spatial, key=lambda n: tr.end[n])
    # a Sequential ends right after its last child with the same output: name the child
    modules = dict(net.named_modules())
    while isinstance(modules[best], nn.Sequential):
        child = [n for n in spatial if n.startswith(best + ".") and tr.end[n] == tr.end[best] - 1]
        if not child or tr.shapes[child[0]] != tr.shapes[best]:
            break
        best = child[0]
    return best


def layer_channels(model: Model | nn.Module, layer: str) -> int:
    """Number of channels (units) of `layer`'s output, from one dry-run forward."""
    model = as_model(model)
    resolve_layer(model.net, layer)
    shape = dry_run(model, 64).shapes.get(layer)
    if not shape:
        raise LayerError(f"layer {layer!r} did not run in the forward pass")
    return shape[0]


def check_units(layer: str, units: Sequence[int], n: int) -> None:
    """An ArgumentError naming the first unit outside 0..n-1 of `layer`."""
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ArgumentError(f"unit {bad[0]} is out of range: layer {layer!r} has {n} channels (0-{n - 1})")


def spread_layers(net: nn.Module, table: Sequence[LayerInfo], k: int) -> list[str]:
    """k layers spread over the depth of the network: stage-like containers (the shallowest
    level with at least four spatial containers, e.g. blocks.0-6 or layer1-4), else
    convolutions."""
    modules = dict(net.named_modules())
    spatial = [i.name for i in table if _is_map(i.shape)]
    containers = [n for n in spatial if len(list(modules[n].children())) > 0]
    candidates: list[str] = []
    for depth in range(0, 4):
        level = [n for n in containers if n.count(".") == depth]
        if len(level) >= 4:
            candidates = level
            break
    if not candidates:
        candidates = [n for n in spatial if isinstance(modules[n], nn.Conv2d)] or spatial
    if not candidates:
        raise LayerError("the model has no layer with a spatial (C, H, W) output to report on")
    n = len(candidates)
    picks = sorted({min(n - 1, int((i + 1) * n / (k + 1))) for i in range(k)})
    return [candidates[i] for i in picks]
