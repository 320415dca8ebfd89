"""Occlusion (Zeiler & Fergus 2014): how much the target's score drops when a window of the
image is replaced by a baseline.

The map is exact and fast: copies run in batches (windows of several images share a batch)
through an inference copy of the network (BatchNorm folded, channels-last), and where the
first layers allow it only the region each window can change (its receptive-field cone) is
re-run, block by block, the rest coming from one pass over the clean image (as in Krypton,
Nakandala et al. 2019); on a Swin transformer, only the attention windows each occluding
window changes. Which of the two runs is decided on the first batches: the incremental one
is kept only if it gives the same scores as whole copies and is faster.

`approximate=True` refines coarse to fine instead: every second window along each axis is
measured and the others estimated from them; then, round by round, the windows that cover
the estimated map's highest pixels are measured, until that region is exact or a budget of
half the windows is spent (Krypton's adaptive drill-down, steered by the map itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from ..errors import ArgumentError, ImageError
from ..models import Model, as_model
from ..progress import Progress
from ..tracing import clock
from ._common import Target
from ._occlusion_engine import Engine, all_windows, window_starts
from .targets import BoundTarget, _class_label, as_target

# approximate mode: every second window along each axis first, then rounds of at most
# `_PER_ROUND` windows an image covering the estimated map's highest `_TOP` of pixels, at most
# `_BUDGET` of all windows in all. Measured on the bundled model and the 13 sample images,
# window 16, stride 8, against the exact map: 355 of 729 windows on average, top-10% IoU 0.93
# (at least 0.70), Spearman 0.83-0.97 (median 0.94). Every third window first and a budget of
# 0.45 measured 297 windows with IoU 0.93 (at least 0.79) but Spearman 0.77-0.93 (median
# 0.89): the estimated part of the map ranked worse.
_COARSE_STEP = 2
_TOP = 0.18
_PER_ROUND = 16
_BUDGET = 0.5
_PLAN_FROM = 160  # occluded copies from which an incremental plan can pay for itself


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


def _check(h: int, w: int, window: int, stride: int) -> None:
    if window < 1 or stride < 1:
        raise ArgumentError("`window` and `stride` must be positive")
    if window > min(h, w):
        raise ArgumentError(f"window {window} px is larger than the {h}x{w} input; use a smaller `window`")


def _tf32_convolutions() -> bool:
    """Whether cuDNN runs float32 convolutions as TF32 (torch reads the legacy flag with an
    error once its newer precision settings were used)."""
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        conv: Any = getattr(torch.backends.cudnn, "conv", None)
        return conv is not None and conv.fp32_precision == "tf32"


class _Scorer:
    """Scores of batches of (image, window) jobs. Until the engine has a verdict, the first two
    batches are also run as whole copies, a few of their windows: the incremental scores must
    equal the whole-copy ones (else whole copies from then on), and on the second, warm batch
    the faster way per copy is kept. The verdict stays with the engine, so a stream of images
    tries once; `mode` and `why` say which way runs and why."""

    def __init__(self, engine: Engine, x: torch.Tensor, base: torch.Tensor, bound: BoundTarget, incremental: bool):
        self.engine, self.x, self.base, self.bound = engine, x, base, bound
        self.mode = "incremental" if incremental and engine.cuts else "whole copies"
        self.why = "" if engine.cuts else f"no plan: {engine.no_plan}"
        if engine.no_plan == "not planned":
            self.why = f"no plan: fewer than {_PLAN_FROM} windows, too few to repay planning"
        if not incremental:
            self.why = "incremental=False"
        elif engine.cuts and engine.verdict is not None:
            self.mode, self.why = engine.verdict
        self.clean: list[torch.Tensor] = []
        self.forwards = 0

    def __call__(self, wins: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        e, t = self.engine, self.bound.take(owners)
        self.forwards += len(owners)
        if self.mode != "incremental":
            return t(e.plain(self.x, self.base, wins, owners))
        if not self.clean:
            self.clean = e.clean_maps(self.x)[1]
        if e.verdict is not None:
            return t(e.incremental(self.x, self.base, wins, owners, self.clean))
        n = len(owners)
        pick = torch.linspace(0, n - 1, min(n, e.whole_batch_size)).round().long().unique().to(owners.device)
        t0 = clock(e.device)
        a = self.bound.take(owners[pick])(e.plain(self.x, self.base, wins[pick], owners[pick]))
        t1 = clock(e.device)
        c = t(e.incremental(self.x, self.base, wins, owners, self.clean))
        t2 = clock(e.device)
        e.trials += 1
        tol = 1e-5 * float(a.abs().max()) + 1e-7
        if not torch.allclose(a, c[pick], rtol=1e-4, atol=tol):
            why = f"incremental scores differ by {float((a - c[pick]).abs().max()):.1e}"
            if e.device.type == "cuda" and _tf32_convolutions():
                why += " (TF32 convolutions round; torch.backends.cudnn.allow_tf32 = False for float32)"
            e.verdict = self.mode, self.why = "whole copies", why
            return t(e.plain(self.x, self.base, wins, owners))
        if e.trials == 2:  # the second batch runs warm: compare the time per copy
            whole, inc = (t1 - t0) / len(pick), (t2 - t1) / n
            if whole <= inc:
                e.verdict = self.mode, self.why = "whole copies", f"faster ({whole:.3f} s vs {inc:.3f} s a copy)"
            else:
                e.verdict = self.mode, self.why = (
                    "incremental",
                    f"exact on the first batches, faster ({inc:.3f} s vs {whole:.3f} s a copy)",
                )
        return c


def _measure(
    score: _Scorer, wins: torch.Tensor, owners: torch.Tensor, widx: torch.Tensor, batch: int, progress: Progress | None
) -> torch.Tensor:
    """Scores of jobs (owners[i], window widx[i]), `batch` at a time."""
    out = torch.empty(len(owners), device=score.x.device)
    for start in range(0, len(owners), batch):
        sl = slice(start, start + batch)
        out[sl] = score(wins[widx[sl]], owners[sl]).float()
        if progress is not None:
            progress.advance(len(owners[sl]))
    return out


def _drops(
    engine: Engine,
    x: torch.Tensor,
    base: torch.Tensor,
    bound: BoundTarget,
    ref: torch.Tensor,
    window: int,
    stride: int,
    *,
    incremental: bool,
    approximate: bool,
    batch_size: int | None,
    progress: Progress | None = None,
    stats: dict[str, Any] | None = None,
) -> torch.Tensor:
    """(B, nY, nX) drops for the images `x` (all of one size) on `engine`."""
    b, (h, w) = x.shape[0], x.shape[-2:]
    ny, nx = len(window_starts(h, window, stride)), len(window_starts(w, window, stride))
    wins = all_windows((h, w), window, stride).to(x.device)
    engine.timed = stats is not None
    score = _Scorer(engine, x, base, bound, incremental)
    batch = batch_size or engine.batch_size
    t0 = clock(x.device)
    if not approximate:
        owners = torch.arange(b, device=x.device).repeat_interleave(ny * nx)
        widx = torch.arange(ny * nx, device=x.device).repeat(b)
        drops = ref[owners] - _measure(score, wins, owners, widx, batch, progress)
        drops = drops.view(b, ny, nx)
    else:
        drops = _coarse_to_fine(score, wins, ref, (h, w), window, stride, batch, progress)
    if stats is not None:
        stats.update(
            mode=score.mode,
            why=score.why,
            batch_size=batch,
            cuts=engine.cuts,
            windows=b * ny * nx,
            forwards=score.forwards,
            seconds=clock(x.device) - t0,
            stages=dict(engine.profile),
        )
    return drops


def _coarse_positions(n: int) -> list[int]:
    """The windows measured first along an axis of `n`: every `_COARSE_STEP`-th and the last."""
    return sorted({*range(0, n, _COARSE_STEP), n - 1})


def _jobs_per_image(ny: int, nx: int, approximate: bool) -> int:
    """Forward passes one image takes at most: every window, or the approximate mode's budget."""
    if not approximate:
        return ny * nx
    coarse = len(_coarse_positions(ny)) * len(_coarse_positions(nx))
    return max(coarse, min(ny * nx, round(_BUDGET * ny * nx)))


def _fill(drops: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Drops (B, nY, nX) where `known`, elsewhere a Gaussian-weighted mean of the known ones
    nearby (normalized convolution; sigma one window position)."""
    ax = torch.arange(-3, 4, dtype=drops.dtype, device=drops.device)
    k1 = torch.exp(-(ax**2) / 2)
    kernel = (k1[:, None] * k1[None, :])[None, None]
    m = known[:, None].to(drops.dtype)
    num = nn.functional.conv2d(drops[:, None] * m, kernel, padding=3)
    den = nn.functional.conv2d(m, kernel, padding=3)
    return torch.where(known, drops, (num / den.clamp(min=1e-12))[:, 0])


def _touching(mask: torch.Tensor, wins: torch.Tensor) -> torch.Tensor:
    """(B, N): window wins[n] contains a pixel where mask (B, H, W) is True (summed-area table)."""
    sat = nn.functional.pad(mask.to(torch.int32).cumsum(1).cumsum(2), (1, 0, 1, 0))
    h, w = mask.shape[-2:]
    y0, y1 = wins[:, 0].clamp(0, h), wins[:, 1].clamp(0, h)  # a window may start past the border
    x0, x1 = wins[:, 2].clamp(0, w), wins[:, 3].clamp(0, w)
    return (sat[:, y1, x1] - sat[:, y0, x1] - sat[:, y1, x0] + sat[:, y0, x0]) > 0


def _coarse_to_fine(
    score: _Scorer,
    wins: torch.Tensor,
    ref: torch.Tensor,
    hw: tuple[int, int],
    window: int,
    stride: int,
    batch: int,
    progress: Progress | None,
) -> torch.Tensor:
    """Approximate drops (B, nY, nX): a coarse grid of windows measured and the rest estimated
    from it; then, round by round, every window that covers a pixel of the estimated map's
    highest `_TOP` is measured (highest estimate first), until all of them are or the budget is
    spent. Where the map is highest it is thus exact; elsewhere it is estimated."""
    b, dev = ref.shape[0], ref.device
    ny, nx = len(window_starts(hw[0], window, stride)), len(window_starts(hw[1], window, stride))
    budget = _jobs_per_image(ny, nx, True)
    known = torch.zeros(b, ny, nx, dtype=torch.bool, device=dev)
    ky, kx = _coarse_positions(ny), _coarse_positions(nx)
    known[:, torch.tensor(ky, device=dev)[:, None], torch.tensor(kx, device=dev)] = True
    drops = torch.zeros(b, ny, nx, device=dev)
    todo = known.clone()
    while True:
        owners, widx = todo.view(b, -1).nonzero(as_tuple=True)
        drops.view(b, -1)[owners, widx] = ref[owners] - _measure(score, wins, owners, widx, batch, progress)
        est = _fill(drops, known)
        heat = spread_windows(est, hw, window, stride)
        k = max(1, min(heat[0].numel(), round((1 - _TOP) * heat[0].numel())))
        top = heat >= heat.flatten(1).kthvalue(k, dim=1).values[:, None, None]
        covers = _touching(top, wins).view(b, ny, nx)
        left = (budget - known.flatten(1).sum(1)).clamp(min=0)
        cand = (covers & ~known).flatten(1)
        n_pick = torch.minimum(torch.minimum(cand.sum(1), left), torch.tensor(_PER_ROUND, device=dev))
        if int(n_pick.max()) == 0:
            break
        order = est.flatten(1).masked_fill(~cand, float("-inf")).argsort(dim=1, descending=True)
        take = torch.arange(order.shape[1], device=dev)[None] < n_pick[:, None]
        todo = torch.zeros_like(known)
        todo.view(b, -1).scatter_(1, order, take)
        known |= todo
    if progress is not None:  # the budget not spent: those windows are done too
        progress.advance(int(b * budget - known.sum()))
    return est


def _prepare_run(
    model: Model, x: torch.Tensor, window: int, stride: int, incremental: bool, engine: Engine | None
) -> Engine:
    h, w = x.shape[-2:]
    _check(h, w, window, stride)
    if engine is None or engine.hw != (h, w):
        jobs = x.shape[0] * len(window_starts(h, window, stride)) * len(window_starts(w, window, stride))
        # planning measures receptive fields and tries both ways: a few batches cannot repay it
        engine = Engine(model.net, x[:1], window, stride, incremental and jobs >= _PLAN_FROM)
    return engine


def occlusion_windows(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    window: int = 16,
    stride: int = 8,
    baseline: str | float = "zero",
    softmax: bool = True,
    batch_size: int | None = None,
    incremental: bool = True,
    approximate: bool = False,
    stats: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, BoundTarget]:
    """Per-window score drops (B, nY, nX), plus the target bound to the images.

    Entry [b, i, j] is score(clean image) - score(image with window (i, j) replaced by the
    baseline); the score is the target's probability (softmax=True) or its logit, or whatever
    a target object scores. Windows of all B images share the forward passes.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain: a class index or name (one per image), None for the top-1
            class, or any target object of `visionlens.attribution.targets`.
        window: the side of the square window, in px.
        stride: the step between windows, in px (`window_starts` places them).
        baseline: what a window is filled with (see `make_baseline`).
        softmax: for a plain class, score its probability (True) or its logit.
        batch_size: occluded copies per forward pass (None: chosen from the network's
            activation memory, at most 32).
        incremental: re-run only the region each window changes in the first layers where
            that is exact and faster (decided on the first two batches; False: whole copies).
        approximate: measure every second window along each axis, estimate the others, then
            measure the windows covering the estimated map's highest 18% of pixels until they
            are all measured, at most half the windows (about 2x fewer forward passes at
            window 16, stride 8, 224 px; exact where the map is highest, estimated elsewhere).
        stats: a dict to fill with how the map was computed: `mode` (incremental or whole
            copies) and `why`, `batch_size`, `cuts`, `windows`, `forwards`, `seconds` and
            `stages` (seconds per segment of the network).

    Returns:
        (drops (B, nY, nX) on the model's device, the `BoundTarget`: its `classes` are the
        (B,) class indices explained, its `label` says what was explained).

    Example:
        >>> model = vl.load_model()
        >>> drops, bound = vl.occlusion_windows(model, model.prepare("chelsea"), window=32, stride=16)
        >>> drops.shape, bound.label
        (torch.Size([1, 13, 13]), "class 282 'tiger cat' (softmax)")
    """
    drops, bound, _ = _occlusion_windows(
        as_model(model),
        x,
        target,
        window=window,
        stride=stride,
        baseline=baseline,
        softmax=softmax,
        batch_size=batch_size,
        incremental=incremental,
        approximate=approximate,
        stats=stats,
    )
    return drops, bound


def _occlusion_windows(
    model: Model,
    x: torch.Tensor,
    target: Target,
    *,
    window: int,
    stride: int,
    baseline: str | float,
    softmax: bool,
    batch_size: int | None,
    incremental: bool,
    approximate: bool,
    stats: dict[str, Any] | None = None,
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, BoundTarget, Engine]:
    if batch_size is not None and batch_size < 1:
        raise ArgumentError(f"`batch_size` must be at least 1, got {batch_size}")
    x = x.to(model.device)
    engine = _prepare_run(model, x, window, stride, incremental, engine)
    base = make_baseline(x, baseline)
    with torch.inference_mode():
        clean_out = engine.run(x)
        bound = as_target(target, softmax).bind(model, clean_out)
        ref = bound(clean_out).float()
        drops = _drops(
            engine,
            x,
            base,
            bound,
            ref,
            window,
            stride,
            incremental=incremental,
            approximate=approximate,
            batch_size=batch_size,
            progress=progress,
            stats=stats,
        )
    return drops, bound, engine


def occlusion(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    window: int = 16,
    stride: int = 8,
    baseline: str | float = "zero",
    softmax: bool = True,
    batch_size: int | None = None,
    incremental: bool = True,
    approximate: bool = False,
    stats: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Occlusion map: at each pixel, the mean score drop over the windows covering it.

    This is exactly what captum.attr.Occlusion returns (for a forward function giving the
    target's score, sliding window (3, window, window), strides (3, stride, stride) and the same
    baseline), summed over colour channels divided by three, i.e. any one channel.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, one per image, None for top-1, or a
            target object).
        window: the side of the square window, in px.
        stride: the step between windows, in px.
        baseline: "zero", "mean", "blur" or a number (see `make_baseline`).
        softmax: for a plain class, score its probability (True) or its logit.
        batch_size: occluded copies per forward pass (None: chosen from the network).
        incremental: re-run only what each window changes where that is exact and faster.
        approximate: coarse-to-fine refinement instead of every window (see
            `occlusion_windows`).
        stats: a dict to fill with how the map was computed (see `occlusion_windows`).

    Returns:
        (B, H, W) score drops on the model's device: positive where hiding the pixels lowers
        the score.

    Example:
        >>> model = vl.load_model()
        >>> vl.occlusion(model, model.prepare("chelsea"), "tiger cat", window=32, stride=16).shape
        torch.Size([1, 224, 224])
    """
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
        approximate=approximate,
        stats=stats,
    )
    return spread_windows(drops, (x.shape[-2], x.shape[-1]), window, stride)


def occlusion_stream(
    model: Model | nn.Module,
    sources: Iterable[Any],
    target: Target = None,
    *,
    images_per_batch: int = 8,
    window: int = 16,
    stride: int = 8,
    baseline: str | float = "zero",
    softmax: bool = True,
    incremental: bool = True,
    approximate: bool = False,
    progress: bool = True,
    skipped: list[tuple[Any, str]] | None = None,
    stats: dict[str, Any] | None = None,
) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor, str]]:
    """Occlusion maps of many images, streamed: images are read `images_per_batch` at a time,
    their windows share forward passes, and one network copy and plan serve them all.

    Args:
        model: a `Model` (its preprocessing makes every image the same size).
        sources: image paths, bundled sample names or PIL images.
        target: what to explain in every image (None: each image's top-1 class).
        images_per_batch: images read and occluded together.
        window: the side of the square window, in px.
        stride: the step between windows, in px.
        baseline: "zero", "mean", "blur" or a number (see `make_baseline`).
        softmax: for a plain class, score its probability (True) or its logit.
        incremental: re-run only what each window changes where that is exact and faster.
        approximate: coarse-to-fine refinement instead of every window.
        progress: show a progress bar (or plain lines when stderr is not a terminal).
        skipped: None: an image that cannot be read is an `ImageError`. A list: such
            images are left out and (source, reason) appended to it, as they come.
        stats: if given, filled as `occlusion_windows` fills it after each batch of images,
            windows, forwards and seconds summed over the images so far.

    Returns:
        An iterator of (source, model input (3, H, W), map (H, W), label of what was
        explained), in the order of `sources`.

    Example:
        >>> model = vl.load_model()
        >>> maps = vl.occlusion_stream(model, ["chelsea", "coffee"], window=32, stride=16)
        >>> [tuple(m.shape) for _, _, m, _ in maps]
        [(224, 224), (224, 224)]
    """
    model = as_model(model)
    if images_per_batch < 1:
        raise ArgumentError(f"`images_per_batch` must be at least 1, got {images_per_batch}")
    engine: Engine | None = None
    todo = list(sources)
    bar: Progress | None = None
    unread = 0
    totals = {"windows": 0, "forwards": 0, "seconds": 0.0}
    try:
        for start in range(0, len(todo), images_per_batch):
            asked = todo[start : start + images_per_batch]
            chunk, x = _read(model, asked, skipped)
            unread += len(asked) - len(chunk)
            if not chunk:
                continue
            if bar is None:  # the model's preprocessing gives every image this size
                h, w = x.shape[-2:]
                _check(h, w, window, stride)
                per = _jobs_per_image(
                    len(window_starts(h, window, stride)), len(window_starts(w, window, stride)), approximate
                )
                bar = Progress("occlusion (windows)", per * len(todo), enabled=progress)
            bar.advance(per * unread)  # the windows of images that could not be read
            unread = 0
            bar.describe(note=f"images {start + 1}-{start + len(asked)} of {len(todo)}")
            part: dict[str, Any] = {}
            drops, bound, engine = _occlusion_windows(
                model,
                x,
                target,
                window=window,
                stride=stride,
                baseline=baseline,
                softmax=softmax,
                batch_size=None,
                incremental=incremental,
                approximate=approximate,
                engine=engine,
                progress=bar,
                stats=part,
            )
            for key in totals:
                totals[key] += part[key]
            if stats is not None:
                stats.update(part, **totals)
            maps = spread_windows(drops, (x.shape[-2], x.shape[-1]), window, stride)
            for i, src in enumerate(chunk):
                label = bound.label
                if bound.classes is not None:  # this image's class, not the whole chunk's
                    label = _class_label(model, bound.classes[i : i + 1]) + (
                        " (softmax)" if "(softmax)" in label else ""
                    )
                yield src, x[i], maps[i], label
        if bar is not None:  # a last batch of images none of which could be read
            bar.advance(per * unread)
    finally:
        if bar is not None:
            bar.close()


def _read(model: Model, chunk: list[Any], skipped: list[tuple[Any, str]] | None) -> tuple[list[Any], torch.Tensor]:
    """The readable sources of `chunk` and their model inputs; with a `skipped` list, the
    unreadable ones are appended to it instead of raising."""
    if skipped is None:
        return chunk, model.prepare(chunk)
    ok, xs = [], []
    for src in chunk:
        try:
            xs.append(model.prepare(src))
        except ImageError as e:
            skipped.append((src, str(e)))
            continue
        ok.append(src)
    return ok, torch.cat(xs) if xs else torch.empty(0)


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
    ones = torch.ones(1, 1, window, window, device=drops.device)
    # each window's value painted over its square and summed: a transposed convolution
    total = nn.functional.conv_transpose2d(drops[:, None].float(), ones, stride=stride)[:, 0, :h, :w]
    count = nn.functional.conv_transpose2d(torch.ones_like(drops[:1, None].float()), ones, stride=stride)[0, 0, :h, :w]
    return total / count.clamp(min=1)


__all__ = ["occlusion", "occlusion_windows", "occlusion_stream", "spread_windows", "make_baseline", "window_starts"]
