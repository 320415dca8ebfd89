"""Attention rollout (Abnar & Zuidema 2020) and per-head attention maps for vision transformers.

The attention weights are computed here, from each self-attention layer's own input and
projections, rather than caught from an attention-dropout hook: timm's fused attention
(`F.scaled_dot_product_attention`) never materializes them, so such hooks see nothing. Two
kinds of layer are understood:

- timm's `Attention` (ViT, DeiT, DINO-style backbones, ...): `qkv`, `num_heads`, `scale` and
  optional `q_norm` / `k_norm`;
- `nn.MultiheadAttention` called as self-attention (torchvision's ViT `EncoderBlock`).

Layers with relative position biases, rotary embeddings, windows or masks (Swin, BEiT, EVA)
are refused with a one-line message rather than answered wrongly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError, LayerError, did_you_mean
from ..layermaps import MAX_PREFIX, MapLayout, declared_prefix, is_attention
from ..models import Model, as_model
from ..probe import Probe
from ._common import Target

HeadFusion = Literal["mean", "max", "min"]
# attributes of attention layers whose weights are not plain softmax(q k^T * scale)
_UNSUPPORTED = ("relative_position_bias_table", "relative_position_index", "rel_pos", "rope", "window_size")


def _is_timm_attention(m: nn.Module) -> bool:
    return is_attention(m) and not isinstance(m, nn.MultiheadAttention)


def attention_layers(model: Model | nn.Module) -> list[str]:
    """The dotted names of a model's self-attention layers, in module order.

    Args:
        model: a `Model` or any `nn.Module`.

    Returns:
        Names of timm `Attention`-style modules (with `qkv`, `num_heads`, `scale`) and
        `nn.MultiheadAttention` modules; empty for a CNN.

    Example:
        >>> from visionlens.attribution import attention_layers
        >>> attention_layers(vl.load_model("digits_vit"))
        ['blocks.0.attn', 'blocks.1.attn', 'blocks.2.attn', 'blocks.3.attn']
    """
    net = as_model(model).net
    return [name for name, m in net.named_modules() if _is_timm_attention(m) or isinstance(m, nn.MultiheadAttention)]


def rollout_applies(model: Model | nn.Module) -> bool:
    """Whether attention rollout and per-head maps apply: the model has self-attention layers
    and all of them are plain global softmax(q k^T) attention (not Swin's windowed attention
    with relative position biases, nor rotary or relative-position variants).

    Args:
        model: a `Model` or any `nn.Module`.

    Returns:
        True for ViT / DeiT-style models.

    Example:
        >>> from visionlens.attribution.attention import rollout_applies
        >>> rollout_applies(vl.load_model("digits_vit")), rollout_applies(vl.load_model())
        (True, False)
    """
    net = as_model(model).net
    names = attention_layers(net)
    modules = dict(net.named_modules())
    return bool(names) and not any(getattr(modules[n], a, None) is not None for n in names for a in _UNSUPPORTED)


def _no_attention(net: nn.Module) -> LayerError:
    return LayerError(
        f"{type(net).__name__} has no self-attention layers (timm Attention or nn.MultiheadAttention); "
        "attention rollout and attention maps need a vision transformer, use gradcam on other models"
    )


def _check_plain(name: str, m: nn.Module, extra: list[Any]) -> None:
    odd = [a for a in _UNSUPPORTED if getattr(m, a, None) is not None]
    if odd:
        raise LayerError(
            f"{name} ({type(m).__name__}) has {odd[0]}: its attention is not plain global softmax(q k^T) "
            "self-attention, which attention maps and rollout need (ViT, DeiT)"
        )
    if any(a is not None and a is not False for a in extra):
        raise LayerError(
            f"{name} was called with a mask or position argument; attention maps need plain self-attention"
        )


def _timm_weights(m: Any, x: torch.Tensor) -> torch.Tensor:  # m: a timm Attention (num_heads, qkv, ...)
    b, n, _ = x.shape
    heads = int(m.num_heads)
    head_dim = int(getattr(m, "head_dim", m.qkv.out_features // (3 * heads)))
    qkv = m.qkv(x).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    q_norm, k_norm = getattr(m, "q_norm", None), getattr(m, "k_norm", None)
    if q_norm is not None:
        q = q_norm(q)
    if k_norm is not None:
        k = k_norm(k)
    return ((q * m.scale) @ k.transpose(-2, -1)).softmax(-1)


def _mha_weights(m: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    if not m.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    b, n, e = query.shape
    heads = m.num_heads
    head_dim = e // heads
    if m.in_proj_weight is not None:
        wq, wk, _ = m.in_proj_weight.chunk(3)
    else:
        wq, wk = m.q_proj_weight, m.k_proj_weight
    bq = bk = None
    if m.in_proj_bias is not None:
        bq, bk, _ = m.in_proj_bias.chunk(3)
    q = F.linear(query, wq, bq).view(b, n, heads, head_dim).transpose(1, 2)
    k = F.linear(key, wk, bk).view(b, key.shape[1], heads, head_dim).transpose(1, 2)
    return ((q / math.sqrt(head_dim)) @ k.transpose(-2, -1)).softmax(-1)


def _collect(
    model: Model,
    x: torch.Tensor,
    names: list[str],
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda a: a,
) -> list[tuple[str, torch.Tensor]]:
    """One forward pass; for each layer in `names`, in the order they ran, `reduce` of its
    attention weights (B, heads, T, T)."""
    net = model.net
    found: list[tuple[str, torch.Tensor]] = []

    def hook(name: str, m: nn.Module) -> Callable[..., None]:
        def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if isinstance(m, nn.MultiheadAttention):
                query = args[0] if args else kwargs["query"]
                key = args[1] if len(args) > 1 else kwargs.get("key", query)
                masks = [kwargs.get(k) for k in ("key_padding_mask", "attn_mask", "is_causal")]
                # positional key_padding_mask, attn_mask, is_causal
                masks += [args[i] for i in (3, 5, 7) if len(args) > i]
                _check_plain(name, m, masks)
                if m.bias_k is not None or m.add_zero_attn:
                    raise LayerError(f"{name}: attention with bias_k / add_zero_attn is not supported")
                w = _mha_weights(m, query, key)
            else:
                _check_plain(name, m, [*args[1:], *kwargs.values()])
                w = _timm_weights(m, args[0] if args else kwargs["x"])
            if w.shape[0] != x.shape[0]:
                raise LayerError(
                    f"{name}: attention over {w.shape[0]} windows for {x.shape[0]} images; "
                    "attention maps need global self-attention (ViT, DeiT), not windows (Swin)"
                )
            found.append((name, reduce(w)))

        return pre

    handles = []
    with Probe(net), torch.no_grad():
        try:
            for name in names:
                m = net.get_submodule(name)
                handles.append(m.register_forward_pre_hook(hook(name, m), with_kwargs=True))
            net(x.to(model.device))
        finally:
            for h in handles:
                h.remove()
    return found


def _prefix(net: nn.Module, tokens: int) -> int:
    p = declared_prefix(net)
    if p is not None:
        return p
    for p in range(MAX_PREFIX + 1):  # the fewest leading tokens that leave a square grid
        side = math.isqrt(tokens - p)
        if side * side == tokens - p:
            return p
    raise LayerError(f"{tokens} tokens do not form a patch grid after up to {MAX_PREFIX} prefix tokens")


def _layout(net: nn.Module, tokens: int, input_hw: tuple[int, int]) -> tuple[MapLayout, tuple[int, int]]:
    """The token layout of the attention's sequence and its patch grid."""
    prefix = _prefix(net, tokens)
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None) or getattr(net, "patch_size", None)
    stride = float(patch[0] if isinstance(patch, (tuple, list)) else patch) if patch else None
    layout = MapLayout("tokens", grid=None, prefix=prefix, stride=stride)
    grid = layout.grid_for(torch.empty(1, tokens, 0), input_hw)
    return layout, grid


def _to_map(rows: torch.Tensor, layout: MapLayout, grid: tuple[int, int], size: tuple[int, int] | None) -> torch.Tensor:
    """(B, K, T) attention rows -> (B, K, h, w) over the patch grid, upsampled to `size`."""
    maps = rows[..., layout.prefix :].reshape(*rows.shape[:2], *grid)
    if size is not None:
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps


def _pick_layer(model: Model, block: int | str) -> str:
    names = attention_layers(model)
    if not names:
        raise _no_attention(model.net)
    if isinstance(block, str):
        hits = [n for n in names if n == block or n.startswith(block + ".")]
        if not hits:
            raise LayerError(f"{block!r} is not and does not hold a self-attention layer{did_you_mean(block, names)}")
        return hits[0]
    if not -len(names) <= block < len(names):
        raise ArgumentError(
            f"block {block} is out of range: the model has {len(names)} attention blocks (0..{len(names) - 1})"
        )
    return names[block]


def attention_weights(model: Model | nn.Module, x: torch.Tensor, *, block: int | str = -1) -> torch.Tensor:
    """The attention weights of one self-attention layer, computed from its input and its own
    q/k projections (so they exist also under fused attention).

    Args:
        model: a ViT-style `Model` or `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        block: which attention layer: an index into `attention_layers(model)` (negative counts
            from the end) or a dotted name (the attention module or the block holding it).

    Returns:
        (B, heads, T, T) softmax weights (each row sums to 1), queries by keys over all T
        tokens (prefix tokens first), on the model's device.

    Example:
        >>> from visionlens.attribution import attention_weights
        >>> model = vl.load_model("digits_vit")
        >>> attention_weights(model, torch.zeros(1, 3, 32, 32), block=0).shape
        torch.Size([1, 4, 65, 65])
    """
    model = as_model(model)
    name = _pick_layer(model, block)
    found = _collect(model, x, [name])
    if not found:
        raise LayerError(f"{name} did not run in the forward pass")
    return found[0][1]


def attention_maps(
    model: Model | nn.Module,
    x: torch.Tensor,
    *,
    block: int | str = -1,
    query: int | tuple[int, int] | None = None,
    upsample: bool = True,
) -> torch.Tensor:
    """Per-head attention of one query token to the patch grid, for one block.

    Args:
        model: a ViT-style `Model` or `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        block: which attention layer (index into `attention_layers(model)`, or a name).
        query: the token whose attention is shown: None for the class token (the first prefix
            token), an int index into the whole sequence (prefix tokens first), or a
            (row, col) patch of the grid.
        upsample: resize to the input's (H, W) (bilinear, as Grad-CAM); False keeps the grid.

    Returns:
        (B, heads, H, W) (or (B, heads, h, w)) attention weights, >= 0, on the model's device;
        prefix tokens are left out, so a head's map sums to at most 1 before upsampling.

    Example:
        >>> model = vl.load_model("digits_vit")
        >>> x = torch.zeros(2, 3, 32, 32)
        >>> vl.attribution.attention_maps(model, x, block=3).shape
        torch.Size([2, 4, 32, 32])
        >>> vl.attribution.attention_maps(model, x, query=(2, 5), upsample=False).shape
        torch.Size([2, 4, 8, 8])
    """
    model = as_model(model)
    w = attention_weights(model, x, block=block)
    tokens = w.shape[-1]
    layout, grid = _layout(model.net, tokens, (x.shape[-2], x.shape[-1]))
    if query is None:
        if layout.prefix == 0:
            raise ArgumentError("this model has no class token; pass `query` as a token index or a (row, col) patch")
        index = 0
    elif isinstance(query, tuple):
        r, c = query
        if not (0 <= r < grid[0] and 0 <= c < grid[1]):
            raise ArgumentError(f"query patch {query} is outside the {grid[0]}x{grid[1]} patch grid")
        index = layout.prefix + r * grid[1] + c
    else:
        if not -tokens <= query < tokens:
            raise ArgumentError(f"query token {query} is out of range: the sequence has {tokens} tokens")
        index = query % tokens
    return _to_map(w[:, :, index, :], layout, grid, (x.shape[-2], x.shape[-1]) if upsample else None)


def attention_rollout(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    head_fusion: HeadFusion = "mean",
    upsample: bool = True,
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each patch flows into the class
    token through all the layers.

    Each layer's attention is fused over heads, the residual connection is added as the
    identity, rows are renormalized ((A + I) / 2 for mean fusion), and the layers are
    multiplied from the first to the last; the class token's row over the patch grid is the
    map. A model without prefix tokens (global average pooling) gets the mean of all rows.

    Args:
        model: a ViT-style `Model` or `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: ignored: rollout does not depend on the class (taken so that every
            attribution method is called alike).
        head_fusion: how heads are combined: "mean" (the paper), "max" or "min".
        upsample: resize to the input's (H, W) (bilinear, as Grad-CAM); False keeps the grid.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> from visionlens.canvas import heldout_canvases
        >>> model = vl.load_model("digits_vit")
        >>> vl.attribution.attention_rollout(model, heldout_canvases().subset([0]).tensor()).shape
        torch.Size([1, 32, 32])
    """
    model = as_model(model)
    fuse: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "mean": lambda a: a.mean(1),
        "max": lambda a: a.amax(1),
        "min": lambda a: a.amin(1),
    }
    if head_fusion not in fuse:
        raise ArgumentError(f"unknown head_fusion {head_fusion!r}; choose mean, max or min")
    names = attention_layers(model)
    if not names:
        raise _no_attention(model.net)
    found = _collect(model, x, names, fuse[head_fusion])
    if not found:
        raise LayerError("no self-attention layer ran in the forward pass")
    tokens = found[0][1].shape[-1]
    eye = torch.eye(tokens, device=found[0][1].device)
    rollout = eye.expand(x.shape[0], -1, -1)
    for _, a in found:
        if a.shape[-1] != tokens:
            raise LayerError("the attention layers differ in sequence length; rollout needs one token sequence")
        a = a + eye
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    layout, grid = _layout(model.net, tokens, (x.shape[-2], x.shape[-1]))
    rows = rollout[:, :1, :] if layout.prefix else rollout.mean(1, keepdim=True)
    return _to_map(rows, layout, grid, (x.shape[-2], x.shape[-1]) if upsample else None)[:, 0]
