"""Which map to trust, measured: faithfulness curves and a sanity check.

- Deletion and insertion (Petsiuk et al. 2018, RISE): pixels are removed from the image (or
  added to a blurred copy), most important first by the map, and the target's score is
  recorded at each step; a faithful map makes deletion fall fast (low AUC) and insertion rise
  fast (high AUC). All steps go through the network in batches, built by one comparison per
  step against the pixels' rank.
- ROAD (Rong et al. 2022): remove a fraction of the pixels, most relevant first (MoRF) or
  least relevant first (LeRF), and fill them by noisy linear imputation (each removed pixel
  the weighted mean of its 8 neighbours, one sparse linear system per image), which leaks far
  less of the removed shape than a constant fill. Faithful: MoRF falls fast, LeRF stays high.
- Cascading parameter randomization (Adebayo et al. 2018): re-initialize the network's layers
  from the top, one group more at a time, and measure the Spearman rank correlation of the map
  with the original; a map that stays the same while the network is destroyed does not explain
  the network (an edge detector would pass for an explanation).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import spsolve
from scipy.stats import spearmanr
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from ..errors import ArgumentError
from ..models import Model, as_model
from ._common import Target, batched_scores, check_positive
from ._fast import FastForward
from .targets import BoundTarget, bind


@dataclass
class Curve:
    """A faithfulness curve: the target's score as pixels are removed or inserted.

    Args:
        fractions: (S,) fraction of pixels removed (or inserted) at each point, 0 to 1.
        scores: (B, S) the target's score at each point, per image.
        kind: "deletion", "insertion", "road-morf" or "road-lerf".

    Example:
        >>> from visionlens.attribution.metrics import Curve
        >>> c = Curve(np.array([0.0, 0.5, 1.0]), np.array([[1.0, 0.5, 0.0]]), "deletion")
        >>> c.auc.tolist()
        [0.5]
    """

    fractions: np.ndarray
    scores: np.ndarray
    kind: str

    @property
    def auc(self) -> np.ndarray:
        """(B,) area under each image's curve (trapezoid rule over the fractions)."""
        return np.trapezoid(self.scores, self.fractions, axis=-1)

    @property
    def mean(self) -> np.ndarray:
        """(B,) mean score over the curve's points (ROAD's summary)."""
        return self.scores.mean(-1)


def _check_maps(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    if maps.ndim == 4 and maps.shape[1] in (1, 3):
        maps = maps.abs().sum(1)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[0] != x.shape[0] or maps.shape[-2:] != x.shape[-2:]:
        raise ArgumentError(
            f"`maps` must be (B, H, W) maps of the images' size {tuple(x.shape[-2:])} for {x.shape[0]} images, "
            f"got shape {tuple(maps.shape)}"
        )
    if not bool(torch.isfinite(maps).all()):
        raise ArgumentError("`maps` contains NaN or infinite values")
    return maps


def _ranks(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(B, H*W) rank of every pixel, 0 for the most important; ties broken at random (seeded)
    so that a constant map is no better than chance."""
    flat = maps.flatten(1).float().cpu()
    gen = torch.Generator().manual_seed(seed)
    jitter = torch.rand(flat.shape, generator=gen) * 1e-6 * (flat.abs().max() + 1e-12)
    order = torch.argsort(flat + jitter, dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks


def _blurred(x: torch.Tensor) -> torch.Tensor:
    sigma = max(x.shape[-2:]) / 20
    k = int(4 * sigma) | 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def deletion_insertion(
    model: Model | nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    steps: int = 100,
    softmax: bool = True,
    batch_size: int = 32,
    deletion_baseline: str = "black",
) -> tuple[Curve, Curve]:
    """Deletion and insertion curves of attribution maps (Petsiuk et al. 2018).

    Deletion replaces the most important pixels first by the baseline (black by default, as
    in RISE), insertion puts them first into a blurred copy; `steps` equal parts of the pixels
    at a time, steps + 1 points from 0 to all pixels.

    Args:
        model: a `Model` or `nn.Module`.
        x: model input, (B, 3, H, W).
        maps: (B, H, W) attribution maps of the input's size (or (B, 3, H, W): |.| summed).
        target: what the maps explain (any target spec; None: each image's top-1 class).
        steps: points on each curve after the first.
        softmax: score the class's probability (RISE) rather than its logit (plain class
            targets only).
        batch_size: images per forward pass.
        deletion_baseline: "black" (a black picture) or "zero" (zeros in model input).

    Returns:
        (deletion, insertion) `Curve`s; their `auc` is in the score's units.

    Example:
        >>> from visionlens.attribution.metrics import deletion_insertion
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=96)
        >>> d, i = deletion_insertion(model, x, vl.gradcam(model, x), steps=10)
        >>> d.scores.shape, bool(d.auc[0] < i.auc[0])
        ((1, 11), True)
    """
    model = as_model(model)
    check_positive(steps=steps, batch_size=batch_size)
    x = x.to(model.device)
    maps = _check_maps(x, maps)
    if deletion_baseline not in ("black", "zero"):
        raise ArgumentError(f"unknown `deletion_baseline` {deletion_baseline!r}; choose black or zero")
    bound = bind(model, x, target, softmax)
    b, hw = x.shape[0], x.shape[-2] * x.shape[-1]
    ranks = _ranks(maps).to(x.device).view(b, 1, *x.shape[-2:])
    # pixel p is changed from step ceil((rank + 1) * steps / hw) on: `steps` equal parts
    first = torch.ceil((ranks + 1).double() * steps / hw).to(torch.int32)
    black = model.to_input(torch.zeros(b, 3, *x.shape[2:])).to(x.device, x.dtype)
    gone = black if deletion_baseline == "black" else torch.zeros_like(x)
    blur = _blurred(x)
    owners = torch.arange(b).repeat_interleave(steps + 1)
    k = torch.arange(steps + 1, device=x.device).repeat(b).view(-1, 1, 1, 1).to(torch.int32)

    def build(start: torch.Tensor, end: torch.Tensor) -> Callable[[slice], torch.Tensor]:
        def make(sl: slice) -> torch.Tensor:
            o = owners[sl].to(x.device)
            return torch.where(first[o] <= k[sl], end[o], start[o])

        return make

    run = FastForward.of(model.net, x[:1])
    dele = batched_scores(run, bound, owners, build(x, gone), batch_size).view(b, steps + 1)
    ins = batched_scores(run, bound, owners, build(blur, x), batch_size).view(b, steps + 1)
    fr = np.arange(steps + 1) / steps
    return Curve(fr, dele.numpy(), "deletion"), Curve(fr, ins.numpy(), "insertion")


_NEIGHBOURS = [((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12), ((0, -1), 1 / 6),
               ((0, 1), 1 / 6), ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12)]  # fmt: skip


def linear_impute(image: torch.Tensor, removed: torch.Tensor, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """ROAD's noisy linear imputation: every removed pixel becomes the weighted mean of its
    8 neighbours (1/6 for edge neighbours, 1/12 for corners, renormalized at the border),
    removed neighbours being unknowns of one sparse linear system; then Gaussian noise of std
    `noise` is added to the filled pixels.

    Args:
        image: (C, H, W) one image.
        removed: (H, W) boolean, True where the pixel is removed.
        noise: std of the noise added to filled pixels (ROAD uses 0.01 on normalized input).
        seed: seed of the noise.

    Returns:
        (C, H, W) image with the removed pixels filled.

    Example:
        >>> from visionlens.attribution.metrics import linear_impute
        >>> img = torch.ones(3, 8, 8)
        >>> hole = torch.zeros(8, 8, dtype=torch.bool)
        >>> hole[2:5, 2:5] = True
        >>> linear_impute(img * 0 + 0.5, hole).allclose(torch.full((3, 8, 8), 0.5))
        True
    """
    c, h, w = image.shape
    gone = removed.cpu().numpy().astype(bool).ravel()
    unknown = np.flatnonzero(gone)
    out = image.detach().cpu().double().reshape(c, -1).clone()
    if unknown.size == 0:
        return image.clone()
    var = np.full(h * w, -1)
    var[unknown] = np.arange(unknown.size)
    yy, xx = np.divmod(unknown, w)
    rows, cols, vals = [], [], []
    rhs = np.zeros((unknown.size, c))
    diag = np.zeros(unknown.size)
    known = out.numpy()
    for (dy, dx), wt in _NEIGHBOURS:
        ny, nx = yy + dy, xx + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        eq = np.flatnonzero(ok)
        nb = ny[ok] * w + nx[ok]
        diag[eq] += wt
        is_var = gone[nb]
        rows.append(eq[is_var])
        cols.append(var[nb[is_var]])
        vals.append(np.full(int(is_var.sum()), -wt))
        rhs[eq[~is_var]] += wt * known[:, nb[~is_var]].T
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    vals.append(diag)
    a = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(unknown.size,) * 2
    )
    sol = np.asarray(spsolve(a, rhs)).reshape(unknown.size, c)
    filled = torch.from_numpy(sol.T.copy())
    if noise > 0:
        gen = torch.Generator().manual_seed(seed)
        filled = filled + noise * torch.randn(filled.shape, generator=gen, dtype=filled.dtype)
    out[:, torch.from_numpy(unknown)] = filled
    return out.reshape(c, h, w).to(image.dtype).to(image.device)


def road(
    model: Model | nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    softmax: bool = True,
    noise: float = 0.01,
    batch_size: int = 32,
) -> tuple[Curve, Curve]:
    """ROAD (Rong et al. 2022): the target's score after removing a fraction of the pixels,
    most relevant first (MoRF) and least relevant first (LeRF), with the removed pixels filled
    by noisy linear imputation (`linear_impute`).

    Args:
        model: a `Model` or `nn.Module`.
        x: model input, (B, 3, H, W).
        maps: (B, H, W) attribution maps of the input's size.
        target: what the maps explain (any target spec; None: each image's top-1 class).
        fractions: the fractions of pixels removed, each in (0, 1).
        softmax: score the class's probability rather than its logit (plain class targets).
        noise: std of the imputation noise, in model-input units.
        batch_size: images per forward pass.

    Returns:
        (morf, lerf) `Curve`s; `mean` is ROAD's per-image summary. Faithful maps have a low
        MoRF mean and a high LeRF mean.

    Example:
        >>> from visionlens.attribution.metrics import road
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=64)
        >>> morf, lerf = road(model, x, vl.gradcam(model, x), fractions=(0.2, 0.5))
        >>> morf.scores.shape
        (1, 2)
    """
    model = as_model(model)
    check_positive(batch_size=batch_size)
    fr = np.asarray(list(fractions), dtype=np.float64)
    if fr.size == 0 or not ((fr > 0) & (fr < 1)).all():
        raise ArgumentError("`fractions` must be a non-empty list of numbers between 0 and 1")
    x = x.to(model.device)
    maps = _check_maps(x, maps)
    bound = bind(model, x, target, softmax)
    b, hw = x.shape[0], x.shape[-2] * x.shape[-1]
    ranks = _ranks(maps).view(b, *x.shape[-2:])
    curves = []
    run = FastForward.of(model.net, x[:1])
    for most_first in (True, False):
        imgs = []
        for i in range(b):
            for f in fr:
                n = int(round(f * hw))
                removed = ranks[i] < n if most_first else ranks[i] >= hw - n
                imgs.append(linear_impute(x[i], removed, noise, seed=i))
        batch = torch.stack(imgs)
        owners = torch.arange(b).repeat_interleave(fr.size)
        s = batched_scores(run, bound, owners, batch.__getitem__, batch_size)
        curves.append(Curve(fr, s.view(b, fr.size).numpy(), "road-morf" if most_first else "road-lerf"))
    return curves[0], curves[1]


@dataclass
class Randomization:
    """The cascading randomization sanity check's result.

    Args:
        groups: names of the layer groups re-initialized, from the top; step i has groups
            [0..i] randomized.
        spearman: (B, S) Spearman rank correlation of each step's map with the original map.
        spearman_abs: (B, S) the same for the maps' absolute values.
        maps: (S + 1, B, H, W) the original map followed by each step's.

    Example:
        >>> from visionlens.attribution.metrics import Randomization
        >>> r = Randomization(["head"], np.array([[0.1]]), np.array([[0.2]]), torch.zeros(2, 1, 4, 4))
        >>> r.groups
        ['head']
    """

    groups: list[str]
    spearman: np.ndarray
    spearman_abs: np.ndarray
    maps: torch.Tensor = field(repr=False)


def _parameter_groups(net: nn.Module, x: torch.Tensor, max_groups: int) -> list[list[str]]:
    """Modules that own parameters, in the order the forward pass runs them, cut into at most
    `max_groups` consecutive groups; returned top (last to run) first."""
    from ..tracing import trace

    with torch.no_grad():
        tr = trace(net, x[:1])
    owners = [n for n in tr.order if any(True for _ in dict(net.named_modules())[n].parameters(recurse=False))]
    if not owners:
        raise ArgumentError("the model has no parameters to randomize")
    k = min(max_groups, len(owners))
    cuts = np.linspace(0, len(owners), k + 1).round().astype(int)
    groups = [owners[cuts[i] : cuts[i + 1]] for i in range(k)]
    return groups[::-1]


def _reinitialize(module: nn.Module, gen: torch.Generator) -> None:
    for p in module.parameters(recurse=False):
        with torch.no_grad():
            if p.ndim > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            else:  # biases and norm scales: fresh values of the same spread
                p.copy_(torch.randn(p.shape, generator=gen) * (float(p.std()) if p.numel() > 1 else 1.0))


def cascading_randomization(
    model: Model | nn.Module,
    x: torch.Tensor,
    method: Callable[[Model, torch.Tensor, BoundTarget], torch.Tensor],
    target: Target = None,
    *,
    groups: int = 8,
    seed: int = 0,
) -> Randomization:
    """Adebayo et al.'s cascading parameter randomization: re-initialize the layers from the
    top, one group more at a time (He-normal weights, fresh biases and norm parameters), and
    compare each map with the original by Spearman rank correlation. The model itself is not
    changed (a copy is randomized).

    Args:
        model: a `Model` or `nn.Module`.
        x: model input, (B, 3, H, W).
        method: `method(model, x, bound_target) -> (B, H, W)` the map to check, e.g.
            `lambda m, x, t: vl.gradcam(m, x, t)`; the target is bound once on the trained
            model, so every step explains the same class.
        target: what to explain (any target spec; None: each image's top-1 class).
        groups: how many groups the parameterized layers are cut into (at most).
        seed: seed of the re-initialization.

    Returns:
        A `Randomization`.

    Example:
        >>> from visionlens.attribution.metrics import cascading_randomization
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=64)
        >>> r = cascading_randomization(model, x, lambda m, x, t: vl.saliency(m, x, t), groups=2)
        >>> r.spearman.shape
        (1, 2)
    """
    from dataclasses import replace

    model = as_model(model)
    check_positive(groups=groups)
    x = x.to(model.device)
    bound = bind(model, x, target)
    net = copy.deepcopy(model.net).eval()
    work = replace(model, net=net)
    maps = [method(work, x, bound).detach().float().cpu()]
    if maps[0].shape != (x.shape[0], *x.shape[-2:]):
        raise ArgumentError(f"the method must return (B, H, W) maps, got shape {tuple(maps[0].shape)}")
    gen = torch.Generator().manual_seed(seed)
    mods = dict(net.named_modules())
    cut = _parameter_groups(net, x, groups)
    names = []
    for group in cut:
        for name in group:
            _reinitialize(mods[name], gen)
        names.append(group[0] if len(group) == 1 else f"{group[0]} .. {group[-1]}")
        maps.append(method(work, x, bound).detach().float().cpu())
    b = x.shape[0]
    rho = np.zeros((b, len(cut)))
    rho_abs = np.zeros((b, len(cut)))
    for i in range(b):
        ref = maps[0][i].flatten().numpy()
        for s in range(len(cut)):
            cur = maps[s + 1][i].flatten().numpy()
            rho[i, s] = _spearman(ref, cur)
            rho_abs[i, s] = _spearman(np.abs(ref), np.abs(cur))
    return Randomization(names, rho, rho_abs, torch.stack(maps))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)
