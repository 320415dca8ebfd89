"""What a network's layers are: the layer table, and the structural queries every technique
and face asks (the first convolution, the last spatial layer, a layer's channel count,
layers spread over depth). Answers come from one dry-run forward of the network itself,
never from layer names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ArgumentError, LayerError
from .fields import ReceptiveField, receptive_fields
from .layermaps import MapLayout, trace_layouts
from .models import Model, as_model
from .probe import Probe, resolve_layer
from .tracing import Trace, trace


@dataclass(frozen=True)
class LayerInfo:
    """One row of the layer table.

    Attributes:
        name: the dotted module name (`blocks.3.0.conv_pw`).
        type: the module's class name.
        shape: its output shape without the batch dimension; None when it never ran.
        field: its receptive field on the model's input, for spatial outputs.

    Example:
        >>> row = [r for r in vl.layer_table(vl.load_model()) if r.name == "blocks.3"][0]
        >>> row.type, row.shape, row.field.size
        ('Sequential', (80, 14, 14), (147, 147))
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


def layer_layouts(model: Model | nn.Module, input_size: int | None = None) -> dict[str, MapLayout]:
    """How every layer's output is laid out (channels-first or channels-last map, tokens on a
    patch grid, vector, other), from one dry run; `Model.layouts` overrides win.

    Args:
        model: a `Model` or any `nn.Module`.
        input_size: the side of the dry run's zero image, px; default: the model's.

    Returns:
        Layer name -> `MapLayout`, for every module that ran.

    Example:
        >>> vl.layer_layouts(vl.load_model())["blocks.2"].kind
        'channels_first'
    """
    model = as_model(model)
    size = input_size or model.preprocessing.input_size
    return {**trace_layouts(dry_run(model, size), size, model.net), **model.layouts}


def map_layout(model: Model | nn.Module, layer: str, input_size: int | None = None) -> MapLayout:
    """The layout of `layer`, which must be drawable as a (C, H, W) map: otherwise a one-line
    `LayerError` naming its shape and layers that are maps."""
    model = as_model(model)
    resolve_layer(model.net, layer)
    layouts = layer_layouts(model, input_size)
    found = layouts.get(layer)
    if found is None:
        raise LayerError(f"layer {layer!r} did not run in the forward pass")
    if not found.is_map:
        maps = [n for n, lay in layouts.items() if lay.is_map and lay.grid is not None and min(lay.grid) > 1]
        shape = "x".join(map(str, found.shape)) if found.shape else "none"
        raise LayerError(
            f"layer {layer!r} has output shape {shape} ({found.kind}), not a map; layers that are maps: "
            f"{', '.join(maps[-3:]) or 'none'} (see `visionlens layers`)"
        )
    return found


def last_spatial_layer(model: Model | nn.Module, input_size: int | None = None) -> str:
    """Where Grad-CAM looks by default, and what the dataset views pool: the last layer whose
    output is a map with H, W > 1 (channels-first, channels-last or a token grid).

    On a CNN that is the last spatial module in execution order (the innermost one, when a
    Sequential just passes its last child's output on). On a transformer whose head reads
    only the class token, the last blocks' token outputs carry no gradient to the patch
    tokens, so the layer is the last token map of the model's width whose patch tokens
    still receive gradient: the last block's first norm (what pytorch-grad-cam's ViT
    tutorial picks by hand).

    Args:
        model: a `Model` or any `nn.Module`.
        input_size: the side of the dry run's zero image, px; default: the model's.

    Returns:
        The layer's dotted name. A model without a map layer is a `LayerError`.

    Example:
        >>> vl.last_spatial_layer(vl.load_model())
        'bn2'
    """
    model = as_model(model)
    size = input_size or model.preprocessing.input_size
    tr = dry_run(model, size)
    layouts = {**trace_layouts(tr, size, model.net), **model.layouts}
    spatial = [n for n in tr.order if n in layouts and layouts[n].is_map and min(layouts[n].grid or (0,)) > 1]
    if not spatial:
        raise LayerError("the model has no layer with a spatial output (a C x H x W map or a grid of tokens)")
    best = max(spatial, key=lambda n: tr.end[n])
    if layouts[best].kind == "tokens":
        return _last_token_layer(model, tr, layouts, size)
    # a Sequential ends right after its last child with the same output: name the child
    modules = dict(model.net.named_modules())
    while isinstance(modules[best], nn.Sequential):
        child = [n for n in spatial if n.startswith(best + ".") and tr.end[n] == tr.end[best] - 1]
        if not child or tr.shapes[child[0]] != tr.shapes[best]:
            break
        best = child[0]
    return best


def _last_token_layer(model: Model, tr: Trace, layouts: dict[str, MapLayout], size: int) -> str:
    """The last token-grid layer of the model's width whose patch tokens get gradient from
    the output (one forward and backward of a random image)."""
    tokens = [n for n in tr.order if layouts[n].kind == "tokens" and layouts[n].grid is not None]
    widths = Counter(layouts[n].channels for n in tokens)
    width = widths.most_common(1)[0][0]
    names = sorted((n for n in tokens if layouts[n].channels == width), key=lambda n: tr.end[n])
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(model.device)
    with torch.inference_mode(False), torch.enable_grad(), Probe(model.net, names) as probe:
        out = model.net(x.requires_grad_(True))
        out = out[0] if isinstance(out, (tuple, list)) else out
        acts = [probe[n] for n in names]
        grads = torch.autograd.grad(out.float().sum(), acts, allow_unused=True)
    reached = [
        n for n, g in zip(names, grads, strict=True) if g is not None and g[:, layouts[n].prefix :].abs().sum() > 0
    ]
    return reached[-1] if reached else names[-1]


def layer_channels(model: Model | nn.Module, layer: str) -> int:
    """Number of channels (units) of `layer`'s output, from one dry-run forward (of a
    64-px zero image).

    Args:
        model: a `Model` or any `nn.Module`.
        layer: a dotted layer name.

    Returns:
        C of a (C, H, W) output (or the first dimension of any other output).

    Example:
        >>> vl.layer_channels(vl.load_model(), "blocks.3")
        80
    """
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
