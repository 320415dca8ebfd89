"""One notion of a layer's output as a map, for every architecture.

A layer's output (batch dimension first) is one of:

- a channels-first map (N, C, H, W): convolutions, ResNet, VGG, DenseNet, EfficientNet;
- a channels-last map (N, H, W, C): timm's Swin stages and their norms, ConvNeXt's norms;
- a token sequence (N, T, D) whose last H x W tokens are a patch grid, after `prefix`
  class / distillation / register tokens: ViT, DeiT, DINO-style backbones;
- a vector (N, F): pooled features, logits;
- anything else (attention internals, heads x tokens x dim), which no technique draws.

`layout_of` decides which from the layer's output shape on a square dry run and from what
the model says about itself (timm's `num_prefix_tokens`, torchvision ViT's `class_token`);
`MapLayout.to_nchw` turns a captured tensor (or its gradient) into (N, C, H, W), so every
technique works on that one form and no user writes reshape code. A user with an exotic
model can pass a `MapLayout` of their own (`Model.layouts[layer] = MapLayout(...)`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from .tracing import Trace

Kind = Literal["channels_first", "channels_last", "tokens", "vector", "other"]
MAX_PREFIX = 8  # more leading non-patch tokens than this are not inferred


@dataclass(frozen=True)
class MapLayout:
    """How one layer's output is laid out.

    Attributes:
        kind: channels_first (N, C, H, W), channels_last (N, H, W, C), tokens (N, T, D),
            vector (N, F) or other.
        channels: C (maps), D (tokens) or F (vectors); 0 for other.
        grid: (H, W) of the map or patch grid on the dry run; None for vectors and other.
        prefix: tokens before the patch grid (class, distillation, registers).
        stride: input pixels per grid cell on the dry run (input size / H).
        shape: the output shape (without the batch) it was read from, when known.
    """

    kind: Kind
    channels: int = 0
    grid: tuple[int, int] | None = None
    prefix: int = 0
    stride: float | None = None
    shape: tuple[int, ...] | None = None

    @property
    def is_map(self) -> bool:
        """True when the output can be drawn as a (C, H, W) map."""
        return self.kind in ("channels_first", "channels_last", "tokens") and self.grid is not None

    def describe(self) -> str:
        """A short name for the layer table: 'CxHxW', 'HxWxC (channels-last)', 'tokens 1+14x14'."""
        if self.kind == "channels_first" and self.grid:
            return "map"
        if self.kind == "channels_last" and self.grid:
            return "map, channels-last"
        if self.kind == "tokens" and self.grid:
            head = f"{self.prefix}+" if self.prefix else ""
            return f"tokens {head}{self.grid[0]}x{self.grid[1]}"
        return self.kind

    def grid_for(self, t: torch.Tensor, input_hw: tuple[int, int] | None = None) -> tuple[int, int]:
        """The (H, W) patch grid of a token tensor `t` (N, T, D) whose input was `input_hw`."""
        n = t.shape[1] - self.prefix
        if input_hw is not None and self.stride:
            h, w = round(input_hw[0] / self.stride), round(input_hw[1] / self.stride)
            if h * w == n:
                return h, w
        if self.grid is not None and self.grid[0] * self.grid[1] == n:
            return self.grid
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens do not form a grid; give the input size")
        return side, side

    def to_nchw(self, t: torch.Tensor, input_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """The tensor `t` of this layout (an activation or its gradient) as (N, C, H, W);
        prefix tokens are dropped. A view where possible: gradients flow through it."""
        if self.kind == "channels_first":
            return t
        if self.kind == "channels_last":
            return t.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            h, w = self.grid_for(t, input_hw)
            patches = t[:, self.prefix :, :]
            return patches.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)
        raise ValueError(f"a {self.kind} output is not a map")

    def from_nchw(self, m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_nchw` for a map of the same size: an (N, C, H, W) tensor laid
        out like `like` (prefix tokens taken from `like`)."""
        if self.kind == "channels_first":
            return m
        if self.kind == "channels_last":
            return m.permute(0, 2, 3, 1)
        if self.kind == "tokens":
            tokens = m.flatten(2).transpose(1, 2)
            return torch.cat([like[:, : self.prefix, :], tokens], 1)
        raise ValueError(f"a {self.kind} output is not a map")


def declared_prefix(net: nn.Module) -> int | None:
    """The number of prefix tokens the model declares: timm's `num_prefix_tokens`, or 1 for
    torchvision's ViT (`class_token`); None when it says nothing."""
    n = getattr(net, "num_prefix_tokens", None)
    if isinstance(n, int):
        return n
    if isinstance(getattr(net, "class_token", None), torch.Tensor):
        return 1
    return None


def _plausible_grid(h: int, w: int, input_size: int) -> bool:
    # a spatial grid on a square dry run is square and no larger than the input
    return h == w and 1 <= h <= input_size


def layout_of(shape: tuple[int, ...] | None, input_size: int, prefix: int | None = None) -> MapLayout:
    """The layout of a layer whose output (without the batch) has `shape` on a square dry
    run of `input_size` px; `prefix` is the model's declared prefix-token count, if any.

    Examples:
        >>> layout_of((40, 28, 28), 224).kind
        'channels_first'
        >>> layout_of((7, 7, 768), 224).kind
        'channels_last'
        >>> layout_of((197, 384), 224, prefix=1).grid
        (14, 14)
    """
    found = _layout_of(shape, input_size, prefix)
    return replace(found, shape=tuple(shape) if shape is not None else None)


def _layout_of(shape: tuple[int, ...] | None, input_size: int, prefix: int | None) -> MapLayout:
    if not shape:
        return MapLayout("other")
    if len(shape) == 1:
        return MapLayout("vector", channels=shape[0])
    if len(shape) == 3:
        a, b, c = shape
        if _plausible_grid(b, c, input_size) and not (a == b and b != c):
            return MapLayout("channels_first", a, (b, c), stride=input_size / b)
        if _plausible_grid(a, b, input_size):
            return MapLayout("channels_last", c, (a, b), stride=input_size / a)
        return MapLayout("other")
    if len(shape) == 2:
        t, d = shape
        options = [prefix, 0] if prefix is not None else range(0, MAX_PREFIX + 1)
        for p in options:
            side = math.isqrt(max(t - p, 0))
            if side >= 1 and side * side == t - p and side <= input_size:
                return MapLayout("tokens", d, (side, side), prefix=p, stride=input_size / side)
        return MapLayout("other")
    return MapLayout("other")


def trace_layouts(tr: Trace, input_size: int, net: nn.Module | None = None) -> dict[str, MapLayout]:
    """The layout of every layer a dry run (`tracing.trace` on one square image of
    `input_size` px) saw. Outputs whose leading dimension is not the batch (Swin's windows,
    attention heads folded into the batch) are `other`."""
    prefix = declared_prefix(net) if net is not None else None
    return {
        name: layout_of(shape, input_size, prefix) if tr.batch.get(name, 1) == 1 else MapLayout("other", shape=shape)
        for name, shape in tr.shapes.items()
    }


def to_maps(
    layouts: Mapping[str, MapLayout], outputs: Mapping[str, torch.Tensor], input_hw: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Each captured output as (N, C, H, W) where its layout is a map, unchanged otherwise
    (vectors, logits); `input_hw` is the (H, W) of the input the network was given."""
    out = {}
    for name, t in outputs.items():
        lay = layouts.get(name)
        out[name] = lay.to_nchw(t, input_hw) if lay is not None and lay.is_map else t
    return out


def is_attention(m: nn.Module) -> bool:
    """A self-attention module: timm's `Attention` (a `qkv` Linear, `num_heads`, `scale`) or
    `nn.MultiheadAttention`. After the first one runs, every token sees every patch."""
    if isinstance(m, nn.MultiheadAttention):
        return True
    return (
        isinstance(getattr(m, "qkv", None), nn.Linear)
        and isinstance(getattr(m, "num_heads", None), int)
        and hasattr(m, "scale")
    )
