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

from ..errors import ArgumentError, LayerError
from ..inspection import activations
from ..layers import check_units, layer_channels
from ..models import Model, as_model
from ..probe import resolve_layer
from . import objectives as O
from .engine import Result, synthesize
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
    of the same unit pushed apart from each other."""
    model = as_model(model)
    if classes is not None:
        cls = [classes] if isinstance(classes, (int, str)) else list(classes)
        idx = [model.class_index(c) for c in cls]
        objective = O.class_logit(idx)
        return synthesize(model, objective, batch=len(idx), size=size, steps=steps, lr=lr, param=param, **engine)
    if layer is None or units is None:
        raise ArgumentError("give a layer and unit(s), or a class")
    unit_list = [units] if isinstance(units, int) else list(units)
    check_units(layer, unit_list, layer_channels(model, layer))
    if diversity > 1:
        if len(unit_list) != 1:
            raise ArgumentError("`diversity` makes several images of ONE unit; give a single unit")
        unit_list = unit_list * diversity
        objective = O.channel(layer, unit_list) - diversity_weight * O.diversity(layer)
    else:
        objective = O.channel(layer, unit_list)
    return synthesize(model, objective, batch=len(unit_list), size=size, steps=steps, lr=lr, param=param, **engine)


def _resize(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(img, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def dream(
    model: Model | torch.nn.Module,
    image: torch.Tensor,
    layer: str,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    lr: float = 0.01,
    tile: int = 512,
    jitter: int = 32,
    seed: int | None = 0,
    progress: bool = False,
) -> Result:
    """DeepDream: amplify whatever `layer` sees, by normalized gradient ascent on the layer's
    L2 over an octave pyramid, with random circular shifts each step. Images larger than
    `tile` are processed in tiles; the shift moves the seams every step so none show.
    `image` is model input (`model.prepare(...)`); the result is the picture in [0, 1]."""
    model = as_model(model)
    resolve_layer(model.net, layer)
    if octaves < 1 or octave_scale <= 1.0:
        raise ArgumentError("`octaves` must be >= 1 and `octave_scale` > 1")
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
            O.layer_l2(layer),
            init=model.to_input(start),
            param="raw",
            steps=steps,
            lr=lr,
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
    layer: str,
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
    (chelsea at 96 px from blocks.1: 25 dB against 18 dB in the same time). `image` is model
    input (`model.prepare(...)`); the result is the picture in [0, 1] of the same size."""
    model = as_model(model)
    target = activations(model, image, [layer])[layer]
    objective = -O.feature_loss(layer, target) - tv_weight * O.total_variation() - alpha_weight * O.alpha_norm(6)
    return synthesize(
        model,
        objective,
        batch=image.shape[0],
        size=tuple(image.shape[-2:]),
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
    matrix: torch.Tensor  # (C, C) Gram matrix
    correlation: torch.Tensor  # (C, C) normalized: G_ij / sqrt(G_ii G_jj)
    top_pairs: list[tuple[int, int, float]]  # most correlated distinct channel pairs


def gram_matrix(model: Model | torch.nn.Module, image: torch.Tensor, layer: str, top: int = 10) -> GramResult:
    """The channel Gram matrix of `layer` for one image (model input, as `model.prepare(...)`
    makes it), with its most correlated pairs."""
    model = as_model(model)
    acts = activations(model, image[:1], [layer])[layer]
    if acts.dim() != 4:
        raise LayerError(f"layer {layer!r} has no spatial output (shape {tuple(acts.shape[1:])}); pick a conv layer")
    g = O.gram(acts)[0]
    d = g.diagonal().clamp(min=1e-12).sqrt()
    corr = g / d[:, None] / d[None, :]
    iu = torch.triu_indices(g.shape[0], g.shape[0], offset=1)
    vals = corr[iu[0], iu[1]]
    order = vals.argsort(descending=True)[:top]
    pairs = [(int(iu[0, k]), int(iu[1, k]), float(vals[k])) for k in order]
    return GramResult(g, corr, pairs)


DEFAULT_STYLE_LAYERS = ("bn1", "blocks.1", "blocks.2", "blocks.3", "blocks.4")


def texture(
    model: Model | torch.nn.Module,
    image: torch.Tensor,
    *,
    layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
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
    coffee) could appear. `image` (the source) is model input (`model.prepare(...)`); the result
    is a `size` x `size` picture in [0, 1]."""
    model = as_model(model)
    targets = activations(model, image[:1], layers)
    objective = -sum(O.gram_loss(n, O.gram(targets[n], smooth), smooth) for n in layers)
    if tv_weight:
        objective = objective - tv_weight * O.total_variation()
    if colour_weight:
        objective = objective - colour_weight * O.colour_match(model.to_image(image.to(model.device)))
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


def style_transfer(
    model: Model | torch.nn.Module,
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    content_layer: str = "blocks.4",
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    content_weight: float = 1.0,
    style_weight: float = 30.0,
    steps: int = 200,
    lr: float = 0.05,
    smooth: bool = True,
    param: str = "fourier",
    optimizer: str = "adam",
    seed: int | None = 0,
    **engine: Any,
) -> Result:
    """Neural style transfer (Gatys et al. 2016), starting from the content image.

    The style's Gram matrices use softmax-smoothed activations (Wang et al. 2021): with plain
    Gram matrices EfficientNet's features paint the style image's objects into the result
    (a cup over the cat) and the content is lost. Adam on the decorrelated Fourier
    parameterization stylizes more strongly than L-BFGS in the same time; pass
    optimizer="lbfgs", lr=1 for the classic optimizer. `content` and `style` are model input
    (`model.prepare(...)`); a style image of another size is resized to the content. The
    result is the picture in [0, 1], the size of the content."""
    model = as_model(model)
    if style.shape[-2:] != content.shape[-2:]:
        style = model.to_input(_resize(model.to_image(style.to(model.device)), tuple(content.shape[-2:])))
    c = activations(model, content[:1], [content_layer])[content_layer]
    s = activations(model, style[:1], style_layers)
    objective = -content_weight * O.feature_loss(content_layer, c) - style_weight * sum(
        O.gram_loss(n, O.gram(s[n], smooth), smooth) for n in style_layers
    )
    return synthesize(
        model,
        objective,
        init=content[:1],
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        param=param,
        transforms=None,
        redirect_steps=0,
        seed=seed,
        **engine,
    )


__all__ = ["DEFAULT_STYLE_LAYERS", "GramResult", "visualize", "dream", "invert", "gram_matrix", "texture", "style_transfer"]
