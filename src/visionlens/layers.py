"""What a network's layers are: the layer table, and the structural queries every technique
and face asks (the first convolution, the last spatial layer, a layer's channel count,
layers spread over depth). Answers come from one dry-run forward of the network itself,
never from layer names."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ArgumentError, LayerError
from .fields import ReceptiveField, receptive_fields
from .layermaps import MapLayout, is_attention, trace_layouts
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
        layout: how its output is laid out (map, channels-last map, tokens, vector).

    Example:
        >>> row = [r for r in vl.layer_table(vl.load_model()) if r.name == "blocks.3"][0]
        >>> row.type, row.shape, row.field.size
        ('Sequential', (80, 14, 14), (147, 147))
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    field: ReceptiveField | None
    layout: MapLayout | None = None

    @property
    def map_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) for a map of any layout (a token grid without its prefix tokens); the
        output shape for anything else."""
        if self.layout is not None and self.layout.is_map and self.layout.grid is not None:
            return (self.layout.channels, *self.layout.grid)
        return self.shape

    @property
    def is_map(self) -> bool:
        """True for outputs drawable as a (C, H, W) map with H, W > 1."""
        if self.layout is not None:
            return self.layout.is_map and self.layout.grid is not None and min(self.layout.grid) > 1
        return _is_map(self.shape)


def dry_run(model: Model | nn.Module, input_size: int | None = None) -> Trace:
    """One forward pass of a zero image (default: the model's input size), recording every
    module's call order and output shape; in eval mode, without gradients, leaving the
    model's mode as it was."""
    model = as_model(model)
    size = input_size or model.preprocessing.input_size
    was_training = model.net.training
    model.net.eval()  # in training mode a dry run would move the BatchNorm statistics
    try:
        with torch.no_grad():
            return trace(model.net, torch.zeros(1, 3, size, size, device=model.device))
    finally:
        model.net.train(was_training)


_FIXED: weakref.WeakKeyDictionary[nn.Module, int | None] = weakref.WeakKeyDictionary()


def fixed_input_size(model: Model | nn.Module) -> int | None:
    """The one input size a network accepts (timm ViTs and Swins made for one size assert
    on any other), or None when it runs at other sizes too. Tried once per network, with a
    dry run at 1.5 times its input size."""
    model = as_model(model)
    if model.net not in _FIXED:
        size = model.preprocessing.input_size
        try:
            dry_run(model, size * 3 // 2 // 32 * 32 or 2 * size)
            _FIXED[model.net] = None
        except Exception:  # noqa: BLE001 - any failure at another size means "this size only"
            _FIXED[model.net] = size
    return _FIXED[model.net]


def fit_input(model: Model | nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` resized (bilinear, differentiably) to the model's fixed input size when it has
    one and `x` is another size; otherwise `x` itself. Lets synthesis run at any image size
    on a model that takes only 224 x 224."""
    size = fixed_input_size(model)
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)


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
    layouts = layer_layouts(model, size, tr)
    modules = dict(model.net.named_modules())
    spatial = [n for n in tr.order if layouts[n].kind == "channels_first"]
    rfs = receptive_fields(model.net, size, spatial) if fields else {}
    if fields:  # a token sees its own patch until the first attention runs, then every patch
        attends = [tr.end[n] for n in tr.order if is_attention(modules[n])]  # the first mixed output
        first = min(attends, default=len(tr.order) * 2 + 2)
        for n in tr.order:
            lay = layouts[n]
            if lay.kind == "tokens" and lay.stride and tr.end[n] < first:
                s = round(lay.stride)
                rfs[n] = ReceptiveField((s, s), (s, s), (0, 0))
    ordered = sorted(tr.order, key=lambda n: tr.start[n]) + [n for n in modules if n and n not in tr.order]
    return [LayerInfo(n, type(modules[n]).__name__, tr.shapes.get(n), rfs.get(n), layouts.get(n)) for n in ordered]


def first_conv(net: nn.Module) -> str:
    """The name of the first `nn.Conv2d` in module order (the one that sees pixels)."""
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise LayerError("the model has no Conv2d layer")


def layer_layouts(
    model: Model | nn.Module, input_size: int | None = None, trace: Trace | None = None
) -> dict[str, MapLayout]:
    """How every layer's output is laid out (channels-first or channels-last map, tokens on a
    patch grid, vector, other), from one dry run; `Model.layouts` overrides win.

    Args:
        model: a `Model` or any `nn.Module`.
        input_size: the side of the dry run's zero image, px; default: the model's.
        trace: a dry run of that size already made (`dry_run`), to reuse instead of a new one.

    Returns:
        Layer name -> `MapLayout`, for every module that ran.

    Example:
        >>> from visionlens.layers import layer_layouts
        >>> layer_layouts(vl.load_model())["blocks.2"].kind
        'channels_first'
    """
    model = as_model(model)
    size = input_size or model.preprocessing.input_size
    tr = trace if trace is not None else dry_run(model, size)
    return {**trace_layouts(tr, size, model.net), **model.layouts}


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
        hint = list(dict.fromkeys([last_spatial_layer(model, input_size), *maps[-2:]])) if maps else ["none"]
        shape = "x".join(map(str, found.shape)) if found.shape else "none"
        raise LayerError(
            f"layer {layer!r} has output shape {shape} ({found.kind}), not a map; layers that are maps: "
            f"{', '.join(hint)} (see `visionlens layers`)"
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
    layouts = layer_layouts(model, size, tr)
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
    """Number of channels (units) of `layer`'s output, from one dry-run forward: C of a
    map (channels-first or channels-last), D of a token grid, F of a vector.

    Args:
        model: a `Model` or any `nn.Module`.
        layer: a dotted layer name.

    Returns:
        The channel count (the first dimension of any other output).

    Example:
        >>> vl.layer_channels(vl.load_model(), "blocks.3")
        80
    """
    model = as_model(model)
    resolve_layer(model.net, layer)
    found = layer_layouts(model).get(layer)
    if found is None or not found.shape:
        raise LayerError(f"layer {layer!r} did not run in the forward pass")
    return found.channels if found.is_map or found.kind == "vector" else found.shape[0]


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
    spatial = [i.name for i in table if i.is_map]
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


# (how many layers to spread over depth, which of them) for each purpose
_PURPOSES = {"dream": (3, 1), "activations": (3, 1), "gram": (3, 1), "invert": (3, 0), "content": (5, 3)}


def default_layer(model: Model | nn.Module, purpose: str) -> str:
    """The layer a technique uses when none is named, chosen from the network's structure
    (`spread_layers`), unless the model names its own (`Model.default_layers`).

    Args:
        model: a `Model` or any `nn.Module`.
        purpose: "dream", "activations", "gram" (a middle layer), "invert" (an early one) or
            "content" (style transfer's content layer, deeper).

    Returns:
        A dotted layer name whose output is a map.

    Example:
        >>> from visionlens.layers import default_layer
        >>> default_layer(vl.load_model(), "dream")
        'blocks.3'
    """
    model = as_model(model)
    if purpose not in _PURPOSES:
        raise ArgumentError(f"unknown purpose {purpose!r}; choose {', '.join(_PURPOSES)}")
    if model.default_layers.get(purpose):
        return model.default_layers[purpose][0]
    k, i = _PURPOSES[purpose]
    spread = spread_layers(model.net, layer_table(model, fields=False), k)  # fewer than k on a small net
    return spread[min(i, len(spread) - 1)]


def style_layers(model: Model | nn.Module) -> list[str]:
    """The layers whose Gram matrices texture synthesis and style transfer match by default:
    five spread over depth (`Model.default_layers["style"]` when the model names them)."""
    model = as_model(model)
    return list(model.default_layers.get("style") or spread_layers(model.net, layer_table(model, fields=False), 5))
