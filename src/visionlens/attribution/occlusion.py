"""Occlusion (Zeiler & Fergus 2014): how much the target's probability drops when a window of
the image is replaced by a baseline.

The map is computed exactly, but fast: instead of re-running the whole network for each of
the hundreds of occluded copies, the first layers are re-run only on the region each window can
change (its receptive-field cone), layer block by layer block, and the untouched rest is
taken from one pass over the clean image (as in Krypton, Nakandala et al. 2019). Models where
that cannot be shown exact on a sample fall back to plain batched passes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from ..errors import ArgumentError
from ..fields import ReceptiveField, receptive_fields
from ..models import Model, as_model
from ..tracing import Trace, forward_until, resume_from, trace
from ._common import Target
from .targets import BoundTarget, as_target

Window = tuple[int, int, int, int]  # rows [y0, y1), cols [x0, x1)
_FRAC = 0.8  # stop cutting once a window changes more than this fraction of a map


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window positions along one axis, as Captum's Occlusion places them (the last window
    may overhang the border and is then cut short).

    Args:
        size: the axis length, in px.
        window: the window side, in px (at most `size`).
        stride: the step between windows, in px.

    Returns:
        The start of each window, in px.

    Example:
        >>> from visionlens.attribution.occlusion import window_starts
        >>> window_starts(224, 16, 8)[-3:], len(window_starts(224, 16, 8))
        ([192, 200, 208], 27)
    """
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def make_baseline(x: torch.Tensor, kind: str | float) -> torch.Tensor:
    """The values an occluded window takes: 'zero' (grey for a model normalized around the
    dataset mean), 'mean' (each image's mean colour) or 'blur' (a blurred copy).

    Args:
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        kind: "zero", "mean", "blur", or a number every pixel takes (in model-input units).

    Returns:
        A (B, 3, H, W) tensor like `x`.

    Example:
        >>> from visionlens.attribution.occlusion import make_baseline
        >>> x = torch.randn(1, 3, 32, 32)
        >>> make_baseline(x, "mean")[0, :, 0, 0].allclose(x.mean(dim=(2, 3))[0])
        True
    """
    if isinstance(kind, (int, float)):
        return torch.full_like(x, float(kind))
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        k = max(3, (min(x.shape[-2:]) // 8) | 1)
        return gaussian_blur(x, [k, k], [k / 3.0, k / 3.0])
    raise ArgumentError(f"unknown baseline {kind!r}; choose zero, mean or blur")


# ---------------------------------------------------------------- incremental plan


@dataclass
class _Segment:
    a: str | None  # the cut it starts from (None: the input image)
    b: str  # the cut it ends at
    rf_b: ReceptiveField
    s: tuple[int, int]  # stride, kernel extent and offset of the segment in a-map coordinates
    r: tuple[int, int]
    p: tuple[int, int]
    crop: tuple[int, int]  # size of the a-map crop every window is computed on
    size_a: tuple[int, int]


def _changed(rf: ReceptiveField, lo: int, hi: int, size: int, axis: int) -> tuple[int, int]:
    """Positions along `axis` of a layer whose receptive field meets input pixels [lo, hi)."""
    s, r, p = rf.stride[axis], rf.size[axis], rf.offset[axis]
    j0 = (lo + p - r) // s + 1
    j1 = -(-(hi + p) // s)
    return max(0, j0), min(size, j1)


def _fold_batchnorms(net: nn.Module, tr: Trace) -> None:
    """Fold each eval-mode BatchNorm2d that directly follows a convolution into its weights."""
    modules = dict(net.named_modules())
    after = {tr.end[n] + 1: n for n in tr.order if isinstance(modules[n], nn.Conv2d) and tr.calls[n] == 1}
    for name in tr.order:
        bn = modules[name]
        conv_name = after.get(tr.start.get(name, -1))
        if not isinstance(bn, nn.BatchNorm2d) or conv_name is None or tr.calls[name] != 1:
            continue
        conv = modules[conv_name]
        if bn.running_var is None or bn.running_mean is None or conv.out_channels != bn.num_features:
            continue
        scale = (bn.running_var + bn.eps).rsqrt() * (bn.weight if bn.weight is not None else 1.0)
        shift = (bn.bias if bn.bias is not None else 0.0) - bn.running_mean * scale
        conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
        bias = conv.bias.data * scale if conv.bias is not None else 0.0
        conv.bias = nn.Parameter(bias + shift, requires_grad=False)
        act = getattr(bn, "act", None)  # timm's BatchNormAct2d carries its activation
        drop = getattr(bn, "drop", None)
        # assigned through the plain-Module view: `forward` is an attribute there
        if isinstance(act, nn.Module):
            modules[name].forward = _act_only(act, drop if isinstance(drop, nn.Module) else None)
        elif type(bn) in (nn.BatchNorm2d,):
            modules[name].forward = _identity
        else:
            continue


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _act_only(act: nn.Module, drop: nn.Module | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward of a folded BatchNormAct2d: its dropout and activation only."""
    return lambda x: act(drop(x) if drop is not None else x)


def _fast_copy(net: nn.Module, x1: torch.Tensor) -> nn.Module:
    """An inference copy: BatchNorm folded into convolutions, channels-last. Kept only if it
    gives the original's logits. (Inplace activations stay: every tensor the occluder feeds
    in or reads back is its own copy.)"""
    fast = copy.deepcopy(net).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        ref = net.eval()(x1)
        plain = copy.deepcopy(fast)
        _fold_batchnorms(fast, trace(fast, x1))
        out = fast(x1)
    if not torch.allclose(out, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max())):
        fast = plain
    return fast.to(memory_format=torch.channels_last)


def _relative(rf: ReceptiveField, rfa: ReceptiveField, i: int) -> tuple[int, int, int]:
    """Stride, kernel extent and offset along axis `i` of field `rf` in units of map `rfa`."""
    return (
        rf.stride[i] // rfa.stride[i],
        (rf.size[i] - rfa.size[i]) // rfa.stride[i] + 1,
        (rf.offset[i] - rfa.offset[i]) // rfa.stride[i],
    )


def _plan(net: nn.Module, tr: Trace, hw: tuple[int, int], window: int, stride: int) -> list[_Segment]:
    """Choose the cuts (block boundaries) where incremental computation pays off."""
    modules = dict(net.named_modules())
    parents = {n: n.rsplit(".", 1)[0] if "." in n else "" for n in modules}
    cands = [
        n
        for n in tr.order
        if n
        and tr.calls.get(n) == 1
        and len(tr.shapes.get(n, ())) == 3
        and (parents[n] == "" or isinstance(modules[parents[n]], nn.Sequential))
    ]
    cands.sort(key=lambda n: tr.end[n])
    fields = receptive_fields(net, hw, cands)
    # a cut whose field equals the previous one's (a block and its last child) adds nothing
    cands = [n for i, n in enumerate(cands) if i == 0 or fields.get(n) != fields.get(cands[i - 1])]
    segments: list[_Segment] = []
    prev: tuple[str | None, ReceptiveField, tuple[int, int]] = (None, ReceptiveField((1, 1), (1, 1), (0, 0)), hw)
    mid = [(hw[0] - window) // 2 // stride * stride, (hw[1] - window) // 2 // stride * stride]
    for name in cands:
        rf = fields.get(name)
        if rf is None or rf.clipped:
            break
        a, rfa, size_a = prev
        if a is not None and tr.end[name] <= tr.end[a]:
            continue
        size_b = tr.shapes[name][1:]
        try:
            (s0, r0, p0), (s1, r1, p1) = _relative(rf, rfa, 0), _relative(rf, rfa, 1)
            s, r, p = (s0, s1), (r0, r1), (p0, p1)
            if any(
                rf.stride[i] % rfa.stride[i]
                or (rf.size[i] - rfa.size[i]) % rfa.stride[i]
                or (rf.offset[i] - rfa.offset[i]) % rfa.stride[i]
                for i in (0, 1)
            ):
                break
        except ZeroDivisionError:
            break
        crop = []
        for ax in (0, 1):
            longest = 0
            for lo in window_starts(hw[ax], window, stride):
                o0, o1 = _changed(rf, lo, min(lo + window, hw[ax]), size_b[ax], ax)
                n0 = max(0, o0 * s[ax] - p[ax])
                n1 = min(size_a[ax], (o1 - 1) * s[ax] - p[ax] + r[ax])
                longest = max(longest, n1 - n0)
            length = longest + s[ax] - 1
            length += (size_a[ax] - length) % s[ax]
            crop.append(length)
        # stop once the region a window changes is no longer small against the map
        o = [_changed(rf, mid[ax], mid[ax] + window, size_b[ax], ax) for ax in (0, 1)]
        frac = (o[0][1] - o[0][0]) * (o[1][1] - o[1][0]) / (size_b[0] * size_b[1])
        if crop[0] >= size_a[0] or crop[1] >= size_a[1] or frac > _FRAC:
            break
        segments.append(_Segment(a, name, rf, s, r, p, (crop[0], crop[1]), size_a))
        prev = (name, rf, (size_b[0], size_b[1]))
    return segments


class _Occluder:
    """Evaluates the target probability of many occluded copies of one image."""

    def __init__(self, net: nn.Module, x: torch.Tensor, window: int, stride: int) -> None:
        self.net = _fast_copy(net, x[:1])
        self.hw = (x.shape[-2], x.shape[-1])
        self.tr = trace(self.net, x[:1])
        self.segments = _plan(self.net, self.tr, self.hw, window, stride)

    def plain(self, x1: torch.Tensor, base: torch.Tensor, wins: list[Window]) -> torch.Tensor:
        batch = x1.repeat(len(wins), 1, 1, 1)
        for i, (y0, y1, x0, x1_) in enumerate(wins):
            batch[i, :, y0:y1, x0:x1_] = base[0, :, y0:y1, x0:x1_]
        return self.net(batch.contiguous(memory_format=torch.channels_last))

    def incremental(
        self, x1: torch.Tensor, base: torch.Tensor, wins: list[Window], clean: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        n = len(wins)
        regions = list(wins)
        values = [base[0, :, y0:y1, x0:x1_] for (y0, y1, x0, x1_) in wins]
        cur = x1
        for seg in self.segments:
            crops, spans = [], []
            for (wy0, wy1, wx0, wx1), reg, val in zip(wins, regions, values, strict=False):
                corner, out = [], []
                for ax, (lo, hi) in enumerate(((wy0, wy1), (wx0, wx1))):
                    o0, o1 = _changed(seg.rf_b, lo, hi, self.tr.shapes[seg.b][1 + ax], ax)
                    need = max(0, o0 * seg.s[ax] - seg.p[ax])
                    c0 = min(need - need % seg.s[ax], seg.size_a[ax] - seg.crop[ax])
                    corner.append(c0)
                    out.append((o0, o1))
                c0, d0 = corner
                crop = cur[0, :, c0 : c0 + seg.crop[0], d0 : d0 + seg.crop[1]].clone()
                crop[:, reg[0] - c0 : reg[1] - c0, reg[2] - d0 : reg[3] - d0] = val
                crops.append(crop)
                spans.append((corner, out))
            batch = torch.stack(crops).contiguous(memory_format=torch.channels_last)
            if seg.a is None:
                res = forward_until(self.net, batch, seg.b)
            else:
                with resume_from(self.net, self.tr, seg.a, batch):
                    res = forward_until(self.net, x1.expand(n, -1, -1, -1), seg.b)
            regions, values = [], []
            for i, ((c0, d0), ((o0, o1), (q0, q1))) in enumerate(spans):
                k0, m0 = c0 // seg.s[0], d0 // seg.s[1]
                regions.append((o0, o1, q0, q1))
                values.append(res[i, :, o0 - k0 : o1 - k0, q0 - m0 : q1 - m0])
            cur = clean[seg.b]
        last = self.segments[-1].b
        maps = cur.repeat(n, 1, 1, 1)
        for i, (reg, val) in enumerate(zip(regions, values, strict=False)):
            maps[i, :, reg[0] : reg[1], reg[2] : reg[3]] = val
        with resume_from(self.net, self.tr, last, maps.contiguous(memory_format=torch.channels_last)):
            return self.net(x1.expand(n, -1, -1, -1))

    def clean_maps(self, x1: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for seg in self.segments:
            out[seg.b] = forward_until(self.net, x1.contiguous(memory_format=torch.channels_last), seg.b)
        return out


def occlusion_windows(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    window: int = 16,
    stride: int = 8,
    baseline: str | float = "zero",
    softmax: bool = True,
    batch_size: int = 32,
    incremental: bool = True,
) -> tuple[torch.Tensor, BoundTarget]:
    """Per-window score drops (B, nY, nX), plus the target bound to the images.

    Entry [b, i, j] is score(clean image) - score(image with window (i, j) replaced by the
    baseline); the score is the target's probability (softmax=True) or its logit.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        window: the side of the square window, in px.
        stride: the step between windows, in px (`window_starts` places them).
        baseline: what a window is filled with (see `make_baseline`).
        softmax: score the target's probability (True) or its logit.
        batch_size: occluded copies per forward pass.
        incremental: re-run only the region each window changes in the first layers (exact,
            checked on two windows per image; False runs whole copies).

    Returns:
        (drops (B, nY, nX) on the model's device, the `BoundTarget`: its `classes` are the
        (B,) class indices explained, its `label` says what was explained).

    Example:
        >>> model = vl.load_model()
        >>> drops, bound = vl.occlusion_windows(model, model.prepare("chelsea"), window=32, stride=16)
        >>> drops.shape, bound.label
        (torch.Size([1, 13, 13]), "class 282 'tiger cat' (softmax)")
    """
    model = as_model(model)
    x = x.to(model.device)
    h, w = x.shape[-2:]
    if window < 1 or stride < 1:
        raise ArgumentError("`window` and `stride` must be positive")
    if window > min(h, w):
        raise ArgumentError(f"window {window} px is larger than the {h}x{w} input; use a smaller `window`")
    ys, xs = window_starts(h, window, stride), window_starts(w, window, stride)
    wins = [(y, min(y + window, h), x0, min(x0 + window, w)) for y in ys for x0 in xs]
    base = make_baseline(x, baseline)
    with torch.inference_mode():
        occ = _Occluder(model.net, x, window, stride)
        clean_out = occ.net(x.contiguous(memory_format=torch.channels_last))
        bound = as_target(target, softmax).bind(model, clean_out)
        clean_scores = bound(clean_out)
        drops = torch.empty(x.shape[0], len(wins), device=x.device)
        for b in range(x.shape[0]):
            x1, base1 = x[b : b + 1], base[b : b + 1]
            ref = clean_scores[b]
            use_inc = incremental and bool(occ.segments)
            if use_inc:
                clean = occ.clean_maps(x1)
                probe = [0, len(wins) // 2 + len(xs) // 2]
                a = occ.plain(x1, base1, [wins[i] for i in probe])
                c = occ.incremental(x1, base1, [wins[i] for i in probe], clean)
                t2 = bound.take([b, b])
                sa, sc = t2(a), t2(c)
                use_inc = bool(torch.allclose(sa, sc, rtol=1e-4, atol=1e-5 * float(sa.abs().max())))
            for start in range(0, len(wins), batch_size):
                chunk = wins[start : start + batch_size]
                out = occ.incremental(x1, base1, chunk, clean) if use_inc else occ.plain(x1, base1, chunk)
                drops[b, start : start + len(chunk)] = ref - bound.take([b] * len(chunk))(out)
    return drops.view(x.shape[0], len(ys), len(xs)), bound


def occlusion(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    window: int = 16,
    stride: int = 8,
    baseline: str | float = "zero",
    softmax: bool = True,
    batch_size: int = 32,
    incremental: bool = True,
) -> torch.Tensor:
    """Occlusion map: at each pixel, the mean score drop over the windows covering it.

    This is exactly what captum.attr.Occlusion returns (for a forward function giving the
    target's score, sliding window (3, window, window), strides (3, stride, stride) and the same
    baseline), summed over colour channels divided by three, i.e. any one channel.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        window: the side of the square window, in px.
        stride: the step between windows, in px.
        baseline: "zero", "mean", "blur" or a number (see `make_baseline`).
        softmax: score the target's probability (True) or its logit.
        batch_size: occluded copies per forward pass.
        incremental: re-run only what each window changes (exact; False runs whole copies).

    Returns:
        (B, H, W) score drops on the model's device: positive where hiding the pixels lowers
        the score.

    Example:
        >>> model = vl.load_model()
        >>> vl.occlusion(model, model.prepare("chelsea"), "tiger cat", window=32, stride=16).shape
        torch.Size([1, 224, 224])
    """
    model = as_model(model)
    drops, _ = occlusion_windows(
        model,
        x,
        target,
        window=window,
        stride=stride,
        baseline=baseline,
        softmax=softmax,
        batch_size=batch_size,
        incremental=incremental,
    )
    return spread_windows(drops, (x.shape[-2], x.shape[-1]), window, stride)


def spread_windows(drops: torch.Tensor, hw: tuple[int, int], window: int, stride: int) -> torch.Tensor:
    """Per-window values (B, nY, nX) to a per-pixel mean over the windows covering each pixel.

    Args:
        drops: per-window values, as `occlusion_windows` returns them.
        hw: the input's (H, W), in px.
        window: the window side the values were measured with, in px.
        stride: the stride they were measured with, in px.

    Returns:
        (B, H, W) per-pixel means, on `drops`' device.

    Example:
        >>> from visionlens.attribution.occlusion import spread_windows
        >>> spread_windows(torch.ones(1, 3, 3), (32, 32), 16, 8).shape
        torch.Size([1, 32, 32])
    """
    h, w = hw
    ys, xs = window_starts(h, window, stride), window_starts(w, window, stride)
    total = torch.zeros(drops.shape[0], h, w, device=drops.device)
    count = torch.zeros(h, w, device=drops.device)
    for i, y in enumerate(ys):
        for j, x0 in enumerate(xs):
            total[:, y : y + window, x0 : x0 + window] += drops[:, i, j, None, None]
            count[y : y + window, x0 : x0 + window] += 1
    return total / count.clamp(min=1)


__all__ = ["occlusion", "occlusion_windows", "spread_windows", "make_baseline", "window_starts"]
