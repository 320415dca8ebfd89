"""Incremental occlusion through window-attention transformers (Swin V1 and V2 from timm, Swin
from torchvision).

An occluding window changes only the tokens whose patch it touches at the patch embedding,
and a Swin block mixes tokens only inside its attention windows (shifted or not): the block's
output differs from the clean image's only in the attention windows that hold a changed
token. So the first blocks, where those windows are few (Swin-T's first stage holds 64 of
them and a 16 px window touches 1 to 4), are recomputed on those windows alone, gathered from
every copy of a batch into one batch of windows, and the rest of each copy's map is the clean
image's. Patch merging runs on whole maps (it is a small share of a pass). Past the last
planned block the network runs on whole maps.

Every block is checked once, when planning: recomputing all its windows this way must give
its own output on the sample image, or the plan stops before it. The occlusion scorer then
compares the first batches with whole copies, as it does for the convolutional plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tracing import Trace, record_io, resume_from, stage_seconds

_FRAC = 0.8  # stop once a window's changed attention windows exceed this share of a map


@dataclass
class _Step:
    name: str
    kind: str  # "embed", "block" or "merge"
    module: nn.Module
    grid: tuple[int, int]  # the output's token grid
    index: torch.Tensor | None = None  # block: (nW, area) flat token positions of each window
    mask: torch.Tensor | None = None  # block: (nW, area, area) additive attention mask, or None
    attend: Callable[[Any, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None
    post_norm: bool = False  # Swin V2: x + norm(attention(x)), not x + attention(norm(x))


def _kinds() -> dict[type, tuple[str, str]]:
    """Module classes the plan knows, as (kind, library)."""
    kinds: dict[type, tuple[str, str]] = {}
    try:
        from timm.layers import PatchEmbed
        from timm.models import swin_transformer as ts
        from timm.models import swin_transformer_v2 as t2

        kinds |= {PatchEmbed: ("embed", "timm"), ts.SwinTransformerBlock: ("block", "timm")}
        kinds |= {ts.PatchMerging: ("merge", "timm"), t2.PatchMerging: ("merge", "timm")}
        kinds[t2.SwinTransformerV2Block] = ("block", "timm-v2")  # normalizes after attention and MLP
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    from torchvision.models import swin_transformer as tv

    kinds |= {tv.SwinTransformerBlock: ("block", "torchvision"), tv.PatchMerging: ("merge", "torchvision")}
    return kinds


def _patch_size(m: nn.Module, lib: str) -> int | None:
    """The patch side of a patch embedding whose tokens each read one patch alone (a
    convolution with kernel = stride and no padding, then per-token layers), else None."""
    if lib == "timm":
        conv, fmt = getattr(m, "proj", None), str(getattr(m, "output_fmt", ""))
        if "NHWC" not in fmt:
            return None
    else:  # torchvision's stem: Sequential(Conv2d, Permute, LayerNorm)
        from torchvision.ops.misc import Permute

        kids = list(m.children())
        if not kids or not all(isinstance(k, (Permute, nn.LayerNorm)) for k in kids[1:]):
            return None
        conv = kids[0]
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != conv.stride or conv.padding != (0, 0):
        return None
    return int(conv.stride[0]) if conv.stride[0] == conv.stride[1] else None


def _window_geometry(m: Any, lib: str, grid: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """A block's attention window size and cyclic shift on a map of `grid` tokens."""
    if lib == "timm":
        return (int(m.window_size[0]), int(m.window_size[1])), (int(m.shift_size[0]), int(m.shift_size[1]))
    size = (int(m.attn.window_size[0]), int(m.attn.window_size[1]))
    # torchvision does not shift along an axis one window covers
    shift = tuple(0 if size[i] >= grid[i] else int(m.attn.shift_size[i]) for i in (0, 1))
    return size, (shift[0], shift[1])


def _shift_mask(grid: tuple[int, int], size: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """(nW, area, area) additive mask of shifted-window attention: -100 between tokens that
    the cyclic shift brought together from different regions of the map, as Swin masks them."""
    region = torch.zeros(grid)
    count = 0
    for h0, h1 in ((0, -size[0]), (-size[0], -shift[0]), (-shift[0], None)):
        for w0, w1 in ((0, -size[1]), (-size[1], -shift[1]), (-shift[1], None)):
            region[h0:h1, w0:w1] = count
            count += 1
    area = size[0] * size[1]
    win = region.view(grid[0] // size[0], size[0], grid[1] // size[1], size[1]).permute(0, 2, 1, 3)
    win = win.reshape(-1, area)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def _window_index(grid: tuple[int, int], size: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """(nW, area) flat positions in the unshifted map of the tokens of each attention window,
    in the order Swin partitions the cyclically shifted map."""
    (h, w), (wh, ww), (sh, sw) = grid, size, shift
    rows = (torch.arange(h) + sh) % h
    cols = (torch.arange(w) + sw) % w
    flat = rows[:, None] * w + cols[None, :]  # shifted position -> original flat position
    return flat.view(h // wh, wh, w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)


def _timm_attention(attn: Any, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """timm's own WindowAttention (Swin V1 or V2) on windows (P, area, C), each with its own
    mask: given P windows and P masks it reads them as one image of P windows."""
    return attn(x, mask=mask)


def _torchvision_attention(attn: Any, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """torchvision's ShiftedWindowAttention on windows (P, area, C), each with its own mask."""
    p, n, c = x.shape
    heads = attn.num_heads
    q, k, v = attn.qkv(x).reshape(p, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    a = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1) + attn.get_relative_position_bias()
    if mask is not None:
        a = a + mask[:, None]
    return attn.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(p, n, c))


def _block_on_windows(step: _Step, x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """The block's output on windows x (P, area, C) whose window numbers are `win`."""
    b: Any = step.module  # a Swin block, in eval mode: its stochastic depth is the identity
    assert step.attend is not None
    mask = None if step.mask is None else step.mask[win]
    if step.post_norm:
        y = x + b.norm1(step.attend(b.attn, x, mask))
        return y + b.norm2(b.mlp(y))
    y = x + step.attend(b.attn, b.norm1(x), mask)
    return y + b.mlp(b.norm2(y))


class WindowPlan:
    """The steps (patch embedding, blocks, patch merging) recomputed window by window."""

    def __init__(self, steps: list[_Step], saving: float) -> None:
        self.steps = steps
        self.saving = saving

    @property
    def names(self) -> list[str]:
        """The steps' module names, in the order they run."""
        return [s.name for s in self.steps]

    @classmethod
    def make(cls, net: nn.Module, tr: Trace, x1: torch.Tensor, wins: torch.Tensor) -> WindowPlan | None:
        """The plan for `net` (an inference copy) and occluding windows `wins` (N, 4), or
        None when the network is not a Swin or no block pays."""
        known = _kinds()
        modules = dict(net.named_modules())
        names = [n for n in tr.order if n and type(modules[n]) in known and tr.calls.get(n) == 1]
        if not names:
            return None
        lib = known[type(modules[names[0]])][1].removesuffix("-v2")
        # the patch embedding: timm's PatchEmbed, or the module that feeds torchvision's first block
        if known[type(modules[names[0]])][0] != "embed":
            if lib != "torchvision" or "features.0" not in modules:
                return None
            names.insert(0, "features.0")
        patch = _patch_size(modules[names[0]], lib)
        if patch is None or x1.shape[-2] % patch or x1.shape[-1] % patch:
            return None
        seen = record_io(net, x1, names)
        ins, outs = [seen[n][0] for n in names], [seen[n][1] for n in names]
        steps: list[_Step] = []
        for i, n in enumerate(names):
            m, out = modules[n], outs[i]
            if out is None or out.dim() != 4 or (i and (ins[i] is None or not torch.equal(ins[i], outs[i - 1]))):
                break  # not a chain of NHWC maps, each step reading the last one's output
            grid = (int(out.shape[1]), int(out.shape[2]))
            kind = "embed" if i == 0 else known[type(m)][0]
            step = _Step(n, kind, m, grid)
            if kind == "merge" and (ins[i].shape[1] % 2 or ins[i].shape[2] % 2):
                break
            if kind == "block":
                size, shift = _window_geometry(m, lib, grid)
                if grid[0] % size[0] or grid[1] % size[1]:
                    break
                step.index = _window_index(grid, size, shift).to(x1.device)
                step.attend = _timm_attention if lib == "timm" else _torchvision_attention
                step.post_norm = known[type(m)][1] == "timm-v2"
                if any(shift):
                    step.mask = _shift_mask(grid, size, shift).to(out.device, out.dtype)
                if not _reproduces(step, ins[i], out):
                    break
            steps.append(step)
        # keep blocks while the windows they recompute are few (judged on at most 1024 of the
        # windows, evenly spread: their masks are a bool per token each); end on a block
        if len(wins) > 1024:
            wins = wins[torch.linspace(0, len(wins) - 1, 1024).round().long()]
        changed = _token_masks(steps[:1], wins, x1.shape[-2:])
        keep, shares = 0, []
        for i, step in enumerate(steps[1:], 1):
            changed, frac = _propagate(step, changed)
            if step.kind == "block" and frac > _FRAC:
                break
            shares.append(frac)
            if step.kind == "block":
                keep = i + 1
        steps = steps[:keep]
        if not any(s.kind == "block" for s in steps):
            return None
        return cls(steps, _saving(net, x1, steps, shares))

    def incremental(
        self,
        net: nn.Module,
        tr: Trace,
        x: torch.Tensor,
        base: torch.Tensor,
        wins: torch.Tensor,
        owners: torch.Tensor,
        clean: list[torch.Tensor],
        tick: Any,
        now: Any,
    ) -> Any:
        """The network's output on copies (image owners[i], window wins[i] set to the
        baseline), recomputing only the changed windows of the planned blocks."""
        n = len(owners)
        t0 = now()
        changed = _token_masks(self.steps[:1], wins, x.shape[-2:])
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        inside = ((rows >= wins[:, :1]) & (rows < wins[:, 1:2]))[:, :, None] & (
            (cols >= wins[:, 2:3]) & (cols < wins[:, 3:4])
        )[:, None, :]
        copies = torch.where(inside[:, None], base[owners], x[owners])
        cur = self.steps[0].module(copies)
        t0 = tick(f"input -> {self.steps[0].name}", t0)
        for k, step in enumerate(self.steps[1:], 1):
            if step.kind == "merge":
                cur = step.module(cur)
                changed, _ = _propagate(step, changed)
            else:
                assert step.index is not None
                gh, gw = step.grid
                flat = cur.reshape(n, gh * gw, -1)
                pick = changed.view(n, -1)[:, step.index].any(-1).nonzero()  # (P, 2): copy, window
                tokens = step.index[pick[:, 1]]
                y = _block_on_windows(step, flat[pick[:, :1], tokens], pick[:, 1])
                out = clean[k][owners].reshape(n, gh * gw, -1)
                out[pick[:, :1], tokens] = y
                cur = out.view(n, gh, gw, -1)
                changed, _ = _propagate(step, changed)
            t0 = tick(f"{self.steps[k - 1].name} -> {step.name}", t0)
        with resume_from(net, tr, self.steps[-1].name, cur):
            out = net(x[:1].expand(n, -1, -1, -1))
        tick(f"{self.steps[-1].name} -> output", t0)
        return out


def _reproduces(step: _Step, x: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether recomputing every window of the block gives its output on `x` (1, H, W, C)."""
    assert step.index is not None
    try:
        with torch.inference_mode():
            nw = len(step.index)
            win = torch.arange(nw, device=x.device)
            y = _block_on_windows(step, x.reshape(-1, x.shape[-1])[step.index], win)
            got = torch.empty_like(out).view(-1, out.shape[-1])
            got[step.index.reshape(-1)] = y.reshape(-1, y.shape[-1])
    except Exception:  # noqa: BLE001 - a block whose internals differ from timm's Swin
        return False
    tol = 1e-5 * float(out.abs().max()) + 1e-7
    return torch.allclose(got.view_as(out), out, rtol=1e-4, atol=tol)


def _token_masks(first: list[_Step], wins: torch.Tensor, hw: Any) -> torch.Tensor:
    """(N, gh, gw) tokens of the patch embedding each window (y0, y1, x0, x1) touches."""
    (gh, gw), (h, w) = first[0].grid, (int(hw[0]), int(hw[1]))
    py, px = h // gh, w // gw
    r = torch.arange(gh, device=wins.device)[None, :]
    c = torch.arange(gw, device=wins.device)[None, :]
    rr = (r * py < wins[:, 1:2]) & ((r + 1) * py > wins[:, :1])
    cc = (c * px < wins[:, 3:4]) & ((c + 1) * px > wins[:, 2:3])
    return rr[:, :, None] & cc[:, None, :]


def _propagate(step: _Step, changed: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Tokens changed after `step` given those changed before it (N, h, w), and the mean share
    of the step's work they need (attention windows for a block, 1 for patch merging)."""
    n = changed.shape[0]
    if step.kind == "merge":
        pooled = F.max_pool2d(changed[:, None].float(), 2)[:, 0] > 0
        return pooled, 1.0
    assert step.index is not None
    sel = changed.reshape(n, -1)[:, step.index].any(-1)  # (N, nW)
    after = torch.zeros_like(changed).view(n, -1)
    idx = sel.nonzero()
    after[idx[:, :1], step.index[idx[:, 1]]] = True
    return after.view_as(changed), float(sel.float().mean())


def _saving(net: nn.Module, x1: torch.Tensor, steps: list[_Step], shares: list[float]) -> float:
    """The fraction of a whole pass the plan saves, from timed passes over `x1`: each planned
    block's time times the share of its windows a copy leaves alone."""
    least = stage_seconds(net, x1, [s.name for s in steps])
    saved = sum(t * (1 - f) for t, f, s in zip(least[1:], shares, steps[1:], strict=False) if s.kind == "block")
    return saved / max(sum(least), 1e-9)
