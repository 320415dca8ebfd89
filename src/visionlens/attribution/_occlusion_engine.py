"""The engine behind `occlusion`: scores batches of occluded copies of images, either as
whole copies through an inference copy of the network (BatchNorm folded into convolutions,
channels-last, batch size from the network's activation memory), or incrementally, re-running
only the receptive-field cone of each window block by block and taking the rest from one
pass over the clean image (Krypton, Nakandala et al. 2019); on a Swin transformer, only the
attention windows each occluding window changes (`_window_tokens`).

Windows are rows of a (N, 4) tensor (y0, y1, x0, x1) and every batch mixes windows of any of
the images: building the copies, cutting the crops a window changes and pasting the
recomputed regions back are tensor gathers, with no Python loop over windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..fields import ReceptiveField, each_receptive_field
from ..tracing import Trace, clock, forward_until, record_io, resume_from, stage_seconds, trace
from ._fast import FastForward
from ._window_tokens import WindowPlan

_FRAC = 0.8  # stop cutting once a window changes more than this fraction of a map
_MEMORY = 1 << 30  # bytes of activations one batch may hold
# Copies per batch at most. On a CPU, batches of 32 run slower per copy than smaller ones
# (measured at 224 px, one thread: Swin-T 172 ms a copy at 32 against 125-130 at 4-8, ViT-S
# 122 against 105, ConvNeXt-T 146 against 117, EfficientNet-Lite0 21 against 15-16): whole
# copies go 8 at a time; incremental batches carry small crops and more Python per batch,
# and run best at 16 (Lite0 6.7 s against 7.2 at 32 and 7.6 at 8, ResNet-50 38.5 against
# 41.6 and 41.9).
_MAX_BATCH = 32
_CPU_BATCH_WHOLE = 8
_CPU_BATCH_INCREMENTAL = 16
# A plan predicted to save less of a pass than this is not tried (all it spares is the
# trial batches, which catch a plan that does not pay). The prediction comes from timed
# batch-1 passes and swings with the machine's load: ConvNeXt-T's first-stage plan read
# 0.09-0.18 and saves about a quarter of a pass once run.
_MIN_SAVING = 0.05


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
    return [i * stride for i in range(-(-(size - window) // stride) + 1)]


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


def _relative(rf: ReceptiveField, rfa: ReceptiveField, i: int) -> tuple[int, int, int]:
    """Stride, kernel extent and offset along axis `i` of field `rf` in units of map `rfa`."""
    return (
        rf.stride[i] // rfa.stride[i],
        (rf.size[i] - rfa.size[i]) // rfa.stride[i] + 1,
        (rf.offset[i] - rfa.offset[i]) // rfa.stride[i],
    )


def _chains(net: nn.Module, tr: Trace, x1: torch.Tensor, parents: set[str]) -> set[str]:
    """Those of `parents` whose output is their children's, run one after another in the
    order they ran (a stage class that calls its downsampling, then its blocks), measured on
    one input `x1`: a cut between two such children is as exact as one inside nn.Sequential.
    A block with a shortcut or a concatenation is not one."""
    modules = dict(net.named_modules())
    seen = record_io(net, x1.contiguous(memory_format=torch.channels_last), sorted(parents))
    ok = set()
    with torch.inference_mode():
        for p, (y, out) in seen.items():
            if y is None or out is None:
                continue
            kids = [f"{p}.{n}" for n, _ in modules[p].named_children() if f"{p}.{n}" in tr.calls]
            if not kids or any(tr.calls[k] != 1 for k in kids):
                continue
            try:
                for k in sorted(kids, key=tr.start.__getitem__):
                    y = modules[k](y)
            except Exception:  # noqa: BLE001 - the children do not take each other's outputs
                continue
            tol = 1e-5 * float(out.abs().max()) + 1e-7
            if isinstance(y, torch.Tensor) and y.shape == out.shape and torch.allclose(y, out, rtol=1e-4, atol=tol):
                ok.add(p)
    return ok


def _plan(net: nn.Module, tr: Trace, x1: torch.Tensor, window: int, stride: int) -> list[_Segment]:
    """Choose the cuts (block boundaries) where incremental computation pays off.

    A cut is the output of a module whose every enclosing module runs its children one
    after another: an nn.Sequential, or a stage (a module with an nn.Sequential among its
    children, such as timm's ConvNeXt and Swin stages) measured to be a chain by `_chains`.
    Cuts inside blocks were measured to cost more than they save (EfficientNet-Lite0: 10 s
    against 7 s with cuts inside its blocks that have no shortcut)."""
    modules = dict(net.named_modules())
    hw = (int(x1.shape[-2]), int(x1.shape[-1]))

    def parents(n: str) -> list[str]:
        parts = n.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts))]

    def stage(m: nn.Module) -> bool:
        return any(isinstance(c, nn.Sequential) for c in m.children())

    cands = [n for n in tr.order if n and tr.calls.get(n) == 1 and len(tr.shapes.get(n, ())) == 3]
    unsure = {p for n in cands for p in parents(n) if not isinstance(modules[p], nn.Sequential)}
    unsure = {p for p in unsure if stage(modules[p])}
    chained = _chains(net, tr, x1, unsure) if unsure else set()
    cands = [n for n in cands if all(isinstance(modules[p], nn.Sequential) or p in chained for p in parents(n))]
    cands.sort(key=lambda n: tr.end[n])
    segments: list[_Segment] = []
    prev: tuple[str | None, ReceptiveField, tuple[int, int]] = (None, ReceptiveField((1, 1), (1, 1), (0, 0)), hw)
    mid = [(hw[0] - window) // 2 // stride * stride, (hw[1] - window) // 2 // stride * stride]
    last: ReceptiveField | None = None
    # fields measured one at a time (a backward pass each), only as far as the plan goes
    for name, rf in each_receptive_field(net, hw, cands):
        # no field (a module that returns its input), or the previous one's (a block and its
        # last child): no cut here
        if rf is None or rf == last:
            continue
        last = rf
        if rf.clipped:
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


def _rows(lo: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size) positions lo[i] + 0..size-1."""
    return lo[:, None] + torch.arange(size, device=lo.device)


def _gather(src: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Crops (n, C, h, w): crop i is src[pick[i]] at rows[i] x cols[i] (indices clamped),
    channels-last."""
    r = rows.clamp(0, src.shape[-2] - 1)[:, :, None]
    c = cols.clamp(0, src.shape[-1] - 1)[:, None, :]
    return src[pick[:, None, None], :, r, c].permute(0, 3, 1, 2)


def _inside(rows: torch.Tensor, cols: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(n, 1, h, w) mask: position (rows[i, u], cols[i, v]) lies in region[i] = (y0, y1, x0, x1)."""
    r = (rows >= region[:, :1]) & (rows < region[:, 1:2])
    c = (cols >= region[:, 2:3]) & (cols < region[:, 3:4])
    return (r[:, :, None] & c[:, None, :])[:, None]


class Engine:
    """Scores occluded copies of images for one network, input size and window geometry.

    Args:
        net: the network (not modified: an inference copy is made).
        x1: one model input (1, 3, H, W) to trace the network on.
        window: the window side, in px.
        stride: the step between windows, in px.
        incremental: plan the block-by-block recomputation (False: whole copies only).
        min_saving: drop a plan predicted to save less than this fraction of a whole pass
            (None: 0.05).

    Attributes:
        segments: the cuts of the convolutional incremental plan (empty: none; also when the
            plan is predicted to save less than `min_saving` of a whole pass).
        windows: the window-attention plan of a Swin transformer (None: not one, or it saves
            too little); a network has one plan or the other.
        cuts: the layers either plan recomputes up to (empty: whole copies only).
        saving: the fraction of a whole pass the plan was predicted to save.
        no_plan: why there is no plan ("" when there is one).
        batch_size: copies per forward pass, from the network's activation memory and the
            device (on a CPU 16 with a convolutional plan, 8 otherwise).
        whole_batch_size: the batch size for whole copies alone.
        verdict: None until the first batches decided between the plan and whole copies,
            then (mode, why); kept so that later images of a stream do not try again.
        profile: seconds spent per stage ("stem -> layer1.0", "layer2.3 -> output", "whole
            network", "build copies") since the engine was made.
    """

    def __init__(
        self,
        net: nn.Module,
        x1: torch.Tensor,
        window: int,
        stride: int,
        incremental: bool = True,
        min_saving: float | None = None,
    ) -> None:
        with torch.inference_mode(False):  # parameters made here stay ordinary tensors
            self.net = FastForward.of(net, x1).net  # the last copy made, when the network is unchanged
            self.hw = (int(x1.shape[-2]), int(x1.shape[-1]))
            self.device = x1.device
            self.tr = trace(self.net, x1)
            self.windows: WindowPlan | None = None
            if incremental:  # a window-attention transformer's plan, if it is one
                wins = all_windows(self.hw, window, stride).to(x1.device)
                self.windows = WindowPlan.make(self.net, self.tr, x1, wins)
            self.segments = _plan(self.net, self.tr, x1, window, stride) if incremental and not self.windows else []
        self.saving = _predicted_saving(self.net, x1, self.segments) if self.segments else 0.0
        if self.windows:
            self.saving = self.windows.saving
        # cuts that come too early: trying them would cost more than they save
        least = _MIN_SAVING if min_saving is None else min_saving
        # why there is no plan, for the caller to report
        self.no_plan = "" if self.segments or self.windows else "no layer where a window's change stays local"
        if not incremental:
            self.no_plan = "not planned"
        if self.saving < least and not self.no_plan:
            self.no_plan = f"the plan would save {self.saving:.0%} of a pass, under {least:.0%}"
            self.segments, self.windows = [], None
        largest = sorted((_numel(s) for s in self.tr.shapes.values()), reverse=True)[:3]
        fits = max(1, _MEMORY // max(1, 4 * sum(largest)))
        cpu = x1.device.type == "cpu"
        self.whole_batch_size = int(min(_CPU_BATCH_WHOLE if cpu else _MAX_BATCH, fits))
        self.batch_size = self.whole_batch_size
        # a Swin's window plan runs most of each copy whole, and 8 suits it (89-93 ms a copy, 94-95 at 16)
        if self.segments:
            self.batch_size = int(min(_CPU_BATCH_INCREMENTAL if cpu else _MAX_BATCH, fits))
        self.profile: dict[str, float] = {}
        self.trials = 0  # batches run both ways so far (the caller's bookkeeping)
        self.timed = True  # the caller reports the profile (see `now`)
        self.verdict: tuple[str, str] | None = None  # (mode, why) once the trials decided

    @property
    def cuts(self) -> list[str]:
        """The layers the incremental plan recomputes up to (empty: whole copies only)."""
        return self.windows.names if self.windows else [s.b for s in self.segments]

    def now(self) -> float:
        """The time, for the profile: on a GPU once its queued work has run, but only while
        the timings count (the trial batches, or a caller that asked for the stages):
        waiting on every stage of every batch would stop the CPU queueing work ahead."""
        return clock(self.device) if self.timed or self.verdict is None else time.perf_counter()

    def _tick(self, key: str, t0: float) -> float:
        t = self.now()
        self.profile[key] = self.profile.get(key, 0.0) + t - t0
        return t

    def run(self, x: torch.Tensor) -> Any:
        """The network's output on a batch of model inputs."""
        return self.net(x.contiguous(memory_format=torch.channels_last))

    def plain(self, x: torch.Tensor, base: torch.Tensor, wins: torch.Tensor, owners: torch.Tensor) -> Any:
        """Output for whole copies: copy i is image owners[i] with window wins[i] replaced by
        the baseline."""
        t0 = self.now()
        h, w = self.hw
        zero = torch.zeros(len(owners), dtype=torch.long, device=x.device)
        mask = _inside(_rows(zero, h), _rows(zero, w), wins)
        batch = torch.where(mask, base[owners], x[owners]).contiguous(memory_format=torch.channels_last)
        t0 = self._tick("build copies", t0)
        out = self.net(batch)
        self._tick("whole network", t0)
        return out

    def clean_maps(self, x: torch.Tensor) -> tuple[Any, list[torch.Tensor]]:
        """One pass over the clean images: the output and every cut's map."""
        maps: dict[str, torch.Tensor] = {}
        modules = dict(self.net.named_modules())
        hooks = []
        for cut in self.cuts:

            def keep(m: nn.Module, i: Any, o: Any, name: str = cut) -> None:
                # a copy: an inplace activation after the cut would overwrite the map
                maps[name] = (o[0] if isinstance(o, (tuple, list)) else o).clone()

            hooks.append(modules[cut].register_forward_hook(keep))
        try:
            out = self.run(x)
        finally:
            for hk in hooks:
                hk.remove()
        return out, [maps[cut] for cut in self.cuts]

    def _geometry_of(self, wins: torch.Tensor) -> list[torch.Tensor]:
        """Per segment, per window: the crop corner (c0, d0) in the segment's input map and
        the region (o0, o1, q0, q1) of its output map the window changes; (n, 6) each."""
        out = []
        for seg in self.segments:
            cols = []
            for ax in (0, 1):
                s, r, p = seg.rf_b.stride[ax], seg.rf_b.size[ax], seg.rf_b.offset[ax]
                lo, hi = wins[:, 2 * ax], wins[:, 2 * ax + 1]
                size_b = self.tr.shapes[seg.b][1 + ax]
                o0 = torch.div(lo + p - r, s, rounding_mode="floor").add(1).clamp(min=0)
                o1 = (-torch.div(-(hi + p), s, rounding_mode="floor")).clamp(max=size_b)
                need = (o0 * seg.s[ax] - seg.p[ax]).clamp(min=0)
                c0 = torch.minimum(need - need % seg.s[ax], torch.full_like(need, seg.size_a[ax] - seg.crop[ax]))
                cols.append((c0, o0, o1))
            (c0, o0, o1), (d0, q0, q1) = cols
            out.append(torch.stack([c0, d0, o0, o1, q0, q1], 1))
        return out

    def incremental(
        self,
        x: torch.Tensor,
        base: torch.Tensor,
        wins: torch.Tensor,
        owners: torch.Tensor,
        clean: list[torch.Tensor],
    ) -> Any:
        """The same output as `plain`, recomputing only each window's cone up to the last
        cut; `clean` is `clean_maps(x)[1]`."""
        if self.windows is not None:
            return self.windows.incremental(self.net, self.tr, x, base, wins, owners, clean, self._tick, self.now)
        n = len(owners)
        every = torch.arange(n, device=x.device)
        geo = self._geometry_of(wins)
        no_offset = torch.zeros(n, 2, dtype=torch.long, device=x.device)
        prev_src, prev_pick, prev_off, prev_region = base, owners, no_offset, wins
        cur = x
        t0 = self.now()
        for k, seg in enumerate(self.segments):
            g = geo[k]
            rows, cols = _rows(g[:, 0], seg.crop[0]), _rows(g[:, 1], seg.crop[1])
            crops = _gather(cur, rows, cols, owners)
            new = _gather(prev_src, rows - prev_off[:, :1], cols - prev_off[:, 1:], prev_pick)
            batch = torch.where(_inside(rows, cols, prev_region), new, crops)
            batch = batch.contiguous(memory_format=torch.channels_last)
            if seg.a is None:
                res = forward_until(self.net, batch, seg.b)
            else:
                with resume_from(self.net, self.tr, seg.a, batch):
                    res = forward_until(self.net, x[:1].expand(n, -1, -1, -1), seg.b)
            offset = torch.stack([g[:, 0] // seg.s[0], g[:, 1] // seg.s[1]], 1)
            prev_src, prev_pick, prev_off, prev_region = res, every, offset, g[:, 2:]
            cur = clean[k]
            t0 = self._tick(f"{seg.a or 'input'} -> {seg.b}", t0)
        last = self.segments[-1]
        h, w = self.tr.shapes[last.b][1:]
        zero = torch.zeros(n, dtype=torch.long, device=x.device)
        rows, cols = _rows(zero, h), _rows(zero, w)
        maps = torch.where(
            _inside(rows, cols, prev_region),
            _gather(prev_src, rows - prev_off[:, :1], cols - prev_off[:, 1:], prev_pick),
            cur[owners],
        ).contiguous(memory_format=torch.channels_last)
        with resume_from(self.net, self.tr, last.b, maps):
            out = self.net(x[:1].expand(n, -1, -1, -1))
        self._tick(f"{last.b} -> output", t0)
        return out


def all_windows(hw: tuple[int, int], window: int, stride: int) -> torch.Tensor:
    """(nY * nX, 4) windows (y0, y1, x0, x1) over an input of size `hw`, row by row."""
    ys = torch.tensor(window_starts(hw[0], window, stride))
    xs = torch.tensor(window_starts(hw[1], window, stride))
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    yy, xx = yy.flatten(), xx.flatten()
    return torch.stack([yy, (yy + window).clamp(max=hw[0]), xx, (xx + window).clamp(max=hw[1])], 1)


def _predicted_saving(net: nn.Module, x1: torch.Tensor, segments: list[_Segment]) -> float:
    """The fraction of a whole pass the plan saves, predicted from timed passes over `x1`:
    each segment's share of the pass times the share of its input map a window leaves
    alone."""
    least = stage_seconds(net, x1.contiguous(memory_format=torch.channels_last), [seg.b for seg in segments])
    kept = [seg.crop[0] * seg.crop[1] / (seg.size_a[0] * seg.size_a[1]) for seg in segments]
    return sum(t * (1 - k) for t, k in zip(least, kept, strict=False)) / max(sum(least), 1e-9)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
