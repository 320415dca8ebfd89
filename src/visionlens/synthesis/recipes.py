"""The techniques that make images, each a short recipe on the one engine (`synthesize`).

Input convention (as everywhere in visionlens): images go in as the model's input, as
`model.prepare(...)` makes it; pictures come out as RGB in [0, 1] (`Result.images`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ArgumentError
from ..inspection import activations
from ..layers import check_units, default_layer, layer_channels, map_layout
from ..layers import style_layers as default_style_layers
from ..models import Model, as_model
from .engine import Result, synthesize
from .objectives import (
    Objective,
    alpha_norm,
    channel,
    class_logit,
    colour_match,
    feature_loss,
    gram,
    gram_loss,
    layer_l2,
    total_variation,
)
from .objectives import diversity as diversity_penalty
from .style import style_transfer
from .transforms import RandomRoll


def visualize(
    model: Model | torch.nn.Module,
    layer: str | None = None,
    units: int | Sequence[int] | None = None,
    *,
    classes: int | str | Sequence[int | str] | None = None,
    diversity: int = 0,
    diversity_weight: float = 1.0,
    size: int = 128,
    steps: int = 512,
    lr: float = 0.05,
    param: str = "fourier",
    **engine: Any,
) -> Result:
    """Gradient ascent from noise to images that maximize a unit (channel) of `layer`, several
    units at once (one image each), or a class logit (`classes`). With `diversity=K`, K images
    of the same unit pushed apart from each other.

    Args:
        model: a `Model` or any `nn.Module`.
        layer: the dotted name of the layer whose units to maximize.
        units: a channel index of `layer`, or several (one image each).
        classes: class indices or names to maximize the logits of instead (one image each).
        diversity: K > 1 makes K images of one unit, pushed apart by a Gram-similarity penalty.
        diversity_weight: the weight of that penalty.
        size: the images' side, in px.
        steps: optimization steps.
        lr: Adam's learning rate.
        param: "fourier" (decorrelated 1/f spectrum) or "pixel".
        **engine: passed on to `synthesize` (seed, transforms, progress, ...).

    Returns:
        A `Result` with one (3, size, size) picture in [0, 1] per unit, class or diverse copy.

    Example:
        >>> model = vl.load_model()
        >>> vl.visualize(model, "blocks.4", [0, 1], size=64, steps=8).images.shape
        torch.Size([2, 3, 64, 64])
        >>> vl.visualize(model, classes=["goldfish", "daisy"], size=64, steps=8).images.shape
        torch.Size([2, 3, 64, 64])
    """
    model = as_model(model)
    if classes is not None:
        cls = [classes] if isinstance(classes, (int, str)) else list(classes)
        idx = [model.class_index(c) for c in cls]
        objective = class_logit(idx)
        return synthesize(model, objective, batch=len(idx), size=size, steps=steps, lr=lr, param=param, **engine)
    if layer is None or units is None:
        raise ArgumentError("give a layer and unit(s), or a class")
    unit_list = [units] if isinstance(units, int) else list(units)
    check_units(layer, unit_list, layer_channels(model, layer))
    if diversity > 1:
        if len(unit_list) != 1:
            raise ArgumentError("`diversity` makes several images of ONE unit; give a single unit")
        unit_list = unit_list * diversity
        objective = channel(layer, unit_list) - diversity_weight * diversity_penalty(layer)
    else:
        objective = channel(layer, unit_list)
    return synthesize(model, objective, batch=len(unit_list), size=size, steps=steps, lr=lr, param=param, **engine)


def _resize(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(img, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def dream(
    model: Model | torch.nn.Module,
    image: torch.Tensor,
    layer: str | None = None,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    strength: float = 0.4,
    lr: float | None = None,
    tile: int = 512,
    jitter: int = 32,
    seed: int | None = 0,
    progress: bool = False,
) -> Result:
    """DeepDream: amplify whatever `layer` sees, by normalized gradient ascent on the layer's
    L2 over an octave pyramid, with random circular shifts each step. Images larger than
    `tile` are processed in tiles; the shift moves the seams every step so none show.

    `strength` scales the step: at the default 0.4 the subject stays recognizable (chelsea
    at 384 px, blocks.3: SSIM 0.73 to the input); 1 gives the classic, fully dreamed look
    (SSIM about 0.4).

    Args:
        model: a `Model` or any `nn.Module`.
        image: model input as `model.prepare` makes it, (B, 3, H, W).
        layer: the dotted name of the layer to amplify (default: a middle one chosen from
            structure, `layers.default_layer(model, "dream")`).
        octaves: pyramid levels (fewer when a level would be under 32 px).
        octave_scale: the size ratio between levels (> 1).
        steps: normalized gradient steps per octave.
        strength: how far the picture may move, in (0, 1].
        lr: the step size, in picture units (default: 0.01 x strength).
        tile: the largest side, in px, evaluated at once.
        jitter: the largest random circular shift per step, in px.
        seed: seed of the shifts.
        progress: show a progress bar.

    Returns:
        A `Result`: the dreamed (B, 3, H, W) pictures in [0, 1], and the objective after every
        step of every octave.

    Example:
        >>> model = vl.load_model()
        >>> vl.dream(model, model.prepare("chelsea"), "blocks.3", octaves=2, steps=4).images.shape
        torch.Size([1, 3, 224, 224])
    """
    model = as_model(model)
    layer = layer or default_layer(model, "dream")
    map_layout(model, layer)
    if octaves < 1 or octave_scale <= 1.0:
        raise ArgumentError("`octaves` must be >= 1 and `octave_scale` > 1")
    if not 0.0 < strength <= 1.0:
        raise ArgumentError(f"`strength` must be in (0, 1], not {strength:g}")
    step = 0.01 * strength if lr is None else lr
    base = model.to_image(image.to(model.device))  # the pyramid and the detail live in picture space
    pyramid = [base]
    for _ in range(octaves - 1):
        h, w = pyramid[-1].shape[-2:]
        nh, nw = int(round(h / octave_scale)), int(round(w / octave_scale))
        if min(nh, nw) < 32:
            break
        pyramid.append(_resize(base, (nh, nw)))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    detail = torch.zeros_like(pyramid[-1])
    result: Result | None = None
    values: list[float] = []
    for octave in reversed(pyramid):
        if detail.shape != octave.shape:
            detail = F.interpolate(detail, size=octave.shape[-2:], mode="bilinear", align_corners=False)
        start = (octave + detail).clamp(0, 1)
        result = synthesize(
            model,
            layer_l2(layer),
            init=model.to_input(start),
            param="raw",
            steps=steps,
            lr=step,
            optimizer="normalized",
            transforms=RandomRoll(jitter, gen),
            tile=tile,
            redirect_steps=0,
            seed=seed,
            progress=progress,
        )
        values += result.values
        detail = result.images - octave
        if result.interrupted or result.failure:
            break
    assert result is not None
    result.values = values
    return result


def invert(
    model: Model | torch.nn.Module,
    image: torch.Tensor,
    layer: str | None = None,
    *,
    steps: int = 150,
    lr: float = 1.0,
    tv_weight: float = 1e-3,
    alpha_weight: float = 1e-5,
    param: str = "fourier",
    optimizer: str = "lbfgs",
    seed: int | None = 0,
    **engine: Any,
) -> Result:
    """Feature inversion (Mahendran & Vedaldi 2015): from noise, an image whose `layer`
    features match those of `image`, with total-variation and alpha-norm priors. L-BFGS on
    the decorrelated Fourier parameterization converges far better than Adam on pixels
    (chelsea at 96 px from blocks.1: 25 dB against 18 dB in the same time).

    Args:
        model: a `Model` or any `nn.Module`.
        image: model input as `model.prepare` makes it, (B, 3, H, W).
        layer: the dotted name of the layer whose features to match (default: an early one,
            `layers.default_layer(model, "invert")`).
        steps: optimization steps.
        lr: the optimizer's learning rate.
        tv_weight: the weight of the total-variation prior.
        alpha_weight: the weight of the alpha-norm prior (alpha 6).
        param: "fourier" or "pixel".
        optimizer: "lbfgs", "adam" or "normalized".
        seed: seed of the starting noise.
        **engine: passed on to `synthesize`.

    Returns:
        A `Result` with the reconstructions, (B, 3, H, W) pictures in [0, 1] the size of
        `image`.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=96, square=True)
        >>> vl.invert(model, x, "blocks.1", steps=20).images.shape
        torch.Size([1, 3, 96, 96])
    """
    model = as_model(model)
    layer = layer or default_layer(model, "invert")
    target = activations(model, image, layer, as_map=True)
    objective = -feature_loss(layer, target) - tv_weight * total_variation() - alpha_weight * alpha_norm(6)
    return synthesize(
        model,
        objective,
        batch=image.shape[0],
        size=(image.shape[-2], image.shape[-1]),
        steps=steps,
        lr=lr,
        param=param,
        optimizer=optimizer,
        transforms=None,
        redirect_steps=0,
        seed=seed,
        **engine,
    )


@dataclass
class GramResult:
    """A layer's channel Gram matrix on one image; `gram_matrix` makes it.

    Attributes:
        matrix: (C, C) inner products of the channel maps, divided by the number of positions.
        correlation: (C, C) the matrix normalized by its diagonal, G_ij / sqrt(G_ii G_jj).
        top_pairs: the most correlated distinct channel pairs as (i, j, correlation), i < j,
            highest first.

    Example:
        >>> model = vl.load_model()
        >>> g = vl.gram_matrix(model, model.prepare("chelsea"), "blocks.2", top=3)
        >>> g.matrix.shape, len(g.top_pairs)
        (torch.Size([40, 40]), 3)
    """

    matrix: torch.Tensor
    correlation: torch.Tensor
    top_pairs: list[tuple[int, int, float]]


def gram_matrix(
    model: Model | torch.nn.Module, image: torch.Tensor, layer: str | None = None, top: int = 10
) -> GramResult:
    """The channel Gram matrix of `layer` for one image, with its most correlated pairs.

    Args:
        model: a `Model` or any `nn.Module`.
        image: model input as `model.prepare` makes it; only the first image is used.
        layer: a layer whose output is a map (any layout; default: a middle one,
            `layers.default_layer(model, "gram")`).
        top: how many channel pairs to list.

    Returns:
        A `GramResult`: the (C, C) matrix, its correlation form and the top pairs.

    Example:
        >>> model = vl.load_model()
        >>> g = vl.gram_matrix(model, model.prepare("chelsea"), "blocks.2")
        >>> g.matrix.shape, g.correlation.diagonal().allclose(torch.ones(40))
        (torch.Size([40, 40]), True)
    """
    model = as_model(model)
    layer = layer or default_layer(model, "gram")
    map_layout(model, layer)  # a layer that is no map is a one-line error naming some that are
    acts = activations(model, image[:1], layer, as_map=True)
    g = gram(acts)[0]
    d = g.diagonal().clamp(min=1e-12).sqrt()
    corr = g / d[:, None] / d[None, :]
    iu = torch.triu_indices(g.shape[0], g.shape[0], offset=1)
    vals = corr[iu[0], iu[1]]
    order = vals.argsort(descending=True)[:top]
    pairs = [(int(iu[0, k]), int(iu[1, k]), float(vals[k])) for k in order]
    return GramResult(g, corr, pairs)


def _total(objectives: Sequence[Objective]) -> Objective:
    """The sum of one or more objectives (the builtin `sum` starts from the int 0)."""
    if not objectives:
        raise ArgumentError("give at least one style layer")
    total = objectives[0]
    for o in objectives[1:]:
        total = total + o
    return total


def texture(
    model: Model | torch.nn.Module,
    image: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    size: int = 256,
    steps: int = 300,
    lr: float = 0.1,
    tv_weight: float = 0.5,
    colour_weight: float = 1.0,
    smooth: bool = False,
    param: str = "fourier",
    optimizer: str = "adam",
    seed: int | None = 0,
    **engine: Any,
) -> Result:
    """Gram-matrix texture synthesis (Gatys et al. 2015): from noise, an image whose Gram
    matrices at several layers match the source's. On EfficientNet the decorrelated Fourier
    parameterization is what makes this work: pixel-space L-BFGS, as with VGG, leaves
    high-frequency noise (see docs/gallery). `colour_weight` also matches the pixels' RGB
    mean and covariance: without it patches of colours the source does not have (cyan in
    coffee) could appear.

    Args:
        model: a `Model` or any `nn.Module`.
        image: the source texture, model input as `model.prepare` makes it (first image used).
        layers: the layers whose Gram matrices to match (default: `layers.style_layers(model)`,
            five spread over depth, or the model's own choice).
        size: the result's side, in px.
        steps: optimization steps.
        lr: the optimizer's learning rate.
        tv_weight: the weight of the total-variation prior (0: none).
        colour_weight: the weight of matching the source's RGB mean and covariance (0: none).
        smooth: softmax-smoothed Gram matrices (Wang et al. 2021).
        param: "fourier" or "pixel".
        optimizer: "adam", "lbfgs" or "normalized".
        seed: seed of the starting noise.
        **engine: passed on to `synthesize`.

    Returns:
        A `Result` with one (3, size, size) picture in [0, 1].

    Example:
        >>> model = vl.load_model()
        >>> vl.texture(model, model.prepare("brick"), size=64, steps=8).images.shape
        torch.Size([1, 3, 64, 64])
    """
    model = as_model(model)
    layers = list(layers or default_style_layers(model))
    targets = activations(model, image[:1], layers, as_map=True)
    objective = -_total([gram_loss(n, gram(targets[n], smooth), smooth) for n in layers])
    if tv_weight:
        objective = objective - tv_weight * total_variation()
    if colour_weight:
        objective = objective - colour_weight * colour_match(model.to_image(image.to(model.device)))
    return synthesize(
        model,
        objective,
        size=size,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        param=param,
        transforms=None,
        redirect_steps=0,
        seed=seed,
        **engine,
    )


__all__ = [
    "GramResult",
    "dream",
    "gram_matrix",
    "invert",
    "style_transfer",
    "texture",
    "visualize",
]
