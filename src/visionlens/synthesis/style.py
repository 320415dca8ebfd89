"""Neural style transfer with a strength that works, and the distances that measure it.

`strength` moves the targets, not the loss weights: the Gram matrices and pixel colour
statistics the result must match are (1 - s) of the content's own plus s of the style's. At 0
the content image already matches them and stays as it is; at 1 the result has the style's
statistics with the content's layout. Loss weights do not do this with Adam, whose step does
not grow with the loss (see DESIGN.md): a weight only tilts a direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ArgumentError
from ..inspection import activations
from ..layers import default_layer
from ..layers import style_layers as default_style_layers
from ..models import Model, as_model
from .engine import Result, synthesize
from .objectives import Objective, colour_match, colour_stats, feature_loss, gram, gram_loss, total_variation

# ITU-R BT.601 luma and the YIQ chroma axes: luminance-only transfer keeps the content's I and Q
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _yiq(pictures: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _YIQ.to(pictures), pictures)


def _rgb(yiq: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_YIQ).to(yiq), yiq).clamp(0, 1)


def _luminance(pictures: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Grey (B, 3, H, W) pictures of the luminance; with `like`, its mean and spread are
    matched to `like`'s luminance (Gatys et al. 2016, colour preservation)."""
    y = _yiq(pictures)[:, :1]
    if like is not None:
        ref = _yiq(like)[:, :1]
        y = (y - y.mean()) / y.std().clamp(min=1e-6) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def _fit(pictures: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if pictures.shape[-2:] == hw:
        return pictures
    return F.interpolate(pictures, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def _smoothed(layers: Sequence[str], smooth: bool | None) -> dict[str, bool]:
    """Which style layers use softmax-smoothed Gram matrices: all (True), none (False), or
    (None) the deeper half, where plain Gram matrices would paint the style's objects."""
    if smooth is not None:
        return {n: smooth for n in layers}
    plain = len(layers) // 2 + 1
    return {n: i >= plain for i, n in enumerate(layers)}


def _weights(n: int, style_weights: Sequence[float] | None) -> list[float]:
    if style_weights is None:
        return [1.0 / n] * n
    w = [float(v) for v in style_weights]
    if len(w) != n:
        raise ArgumentError(f"`style_weights` has {len(w)} values for {n} style images; give one per style image")
    if any(v < 0 for v in w) or sum(w) <= 0:
        raise ArgumentError("`style_weights` must be >= 0 and not all 0")
    return [v / sum(w) for v in w]


def style_transfer(
    model: Model | torch.nn.Module,
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    *,
    strength: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_colour: bool = False,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    colour_weight: float = 1.0,
    tv_weight: float = 0.0,
    steps: int = 200,
    lr: float | None = None,
    smooth: bool | None = None,
    param: str = "fourier",
    optimizer: str = "adam",
    seed: int | None = 0,
    **engine: Any,
) -> Result:
    """Neural style transfer (Gatys et al. 2016) from the content image, with a strength knob.

    The result keeps the content's features at `content_layer` while matching, at the style
    layers, Gram matrices that are (1 - strength) of the content's and `strength` of the
    style's, and likewise the pixels' RGB mean and covariance. On EfficientNet the deeper
    style layers use softmax-smoothed Gram matrices (Wang et al. 2021; with plain ones the
    style image's objects, a cup, appear over the cat) and the shallower ones plain Gram
    matrices (the brush-stroke texture, which smoothing washes out).

    Args:
        model: a `Model` or any `nn.Module`.
        content: model input as `model.prepare` makes it (first image used).
        style: the style image as model input, or several (blended by `style_weights`);
            each is resized to the content's size when it differs.
        strength: 0 (the content, unchanged) to 1 (the style's statistics throughout).
        style_weights: one weight per style image (default: equal); they are normalized.
        preserve_colour: transfer luminance only and keep the content's colours.
        content_layer: the layer whose features keep the content (default: a deep one chosen
            from structure, `layers.default_layer(model, "content")`).
        style_layers: the layers whose Gram matrices carry the style (default:
            `layers.style_layers(model)`).
        content_weight: the weight of the content loss.
        style_weight: the weight of the Gram losses (their sum over layers).
        colour_weight: the weight of matching the pixels' RGB mean and covariance.
        tv_weight: the weight of a total-variation prior (0: none).
        steps: optimization steps.
        lr: the learning rate (default: 0.05 for Adam, 1 for L-BFGS, 0.01 for "normalized").
        smooth: softmax-smoothed Gram matrices on every style layer (True), on none (False),
            or on the deeper half (None).
        param: "fourier" or "pixel".
        optimizer: "adam", "lbfgs" (the papers' optimizer) or "normalized".
        seed: seed of the transforms and noise.
        **engine: passed on to `synthesize`.

    Returns:
        A `Result` with one (3, H, W) picture in [0, 1], the size of `content`.

    Example:
        >>> model = vl.load_model()
        >>> c, s = model.prepare("chelsea", size=64), model.prepare("coffee", size=64)
        >>> vl.style_transfer(model, c, s, strength=0.5, steps=4).images.shape
        torch.Size([1, 3, 64, 96])
        >>> vl.style_transfer(model, c, [s, c], style_weights=[2, 1], preserve_colour=True, steps=4).images.shape
        torch.Size([1, 3, 64, 96])
    """
    model = as_model(model)
    if not 0.0 <= strength <= 1.0:
        raise ArgumentError(f"`strength` must be in [0, 1], not {strength:g}")
    styles = [style] if isinstance(style, torch.Tensor) else list(style)
    if not styles:
        raise ArgumentError("give at least one style image")
    weights = _weights(len(styles), style_weights)
    if lr is None:
        lr = {"adam": 0.05, "lbfgs": 1.0, "normalized": 0.01}.get(optimizer, 0.05)
    if strength == 0:  # the content already matches its own statistics: Adam would only amplify rounding noise
        return Result(model.to_image(content[:1].to(model.device)).detach().clone())
    hw = (content.shape[-2], content.shape[-1])
    c01 = model.to_image(content[:1].to(model.device))
    s01 = [_fit(model.to_image(s[:1].to(model.device)), hw) for s in styles]
    if preserve_colour:
        s01 = [_luminance(s, like=c01) for s in s01]
        c01 = _luminance(c01)
    content_layer = content_layer or default_layer(model, "content")
    layers = list(style_layers or default_style_layers(model))
    smoothed = _smoothed(layers, smooth)
    c_acts = activations(model, model.to_input(c01), [content_layer, *layers], as_map=True)
    s_acts = [activations(model, model.to_input(s), layers, as_map=True) for s in s01]

    def target(n: str) -> torch.Tensor:
        g = (1 - strength) * gram(c_acts[n], smoothed[n])
        for w, a in zip(weights, s_acts, strict=True):
            g = g + strength * w * gram(a[n], smoothed[n])
        return g

    if not layers:
        raise ArgumentError("give at least one style layer")
    grams: Objective = gram_loss(layers[0], target(layers[0]), smoothed[layers[0]])
    for n in layers[1:]:
        grams = grams + gram_loss(n, target(n), smoothed[n])
    objective = -content_weight * feature_loss(content_layer, c_acts[content_layer]) - style_weight * grams
    if colour_weight:
        mu, cov = (v * (1 - strength) for v in colour_stats(c01))
        for w, s in zip(weights, s01, strict=True):
            s_mu, s_cov = colour_stats(s)
            mu, cov = mu + strength * w * s_mu, cov + strength * w * s_cov
        objective = objective - colour_weight * colour_match(stats=(mu, cov))
    if tv_weight:
        objective = objective - tv_weight * total_variation()
    res = synthesize(
        model,
        objective,
        init=model.to_input(c01),
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        param=param,
        transforms=None,
        redirect_steps=0,
        seed=seed,
        **engine,
    )
    if preserve_colour:  # the result's luminance with the content's chroma
        chroma = _yiq(model.to_image(content[:1].to(model.device)))[:, 1:]
        res.images = _rgb(torch.cat([_yiq(res.images)[:, :1], chroma], 1))
    return res


def style_distance(
    model: Model | torch.nn.Module,
    pictures: torch.Tensor,
    style: torch.Tensor,
    layers: Sequence[str] | None = None,
) -> float:
    """How far pictures are from a style image: the smoothed-Gram loss summed over the style
    layers, each ||G - G_style||^2 / ||G_style||^2 (0: the same statistics).

    Args:
        model: a `Model` or any `nn.Module`.
        pictures: (1, 3, H, W) RGB in [0, 1], e.g. `Result.images`.
        style: the style picture, (1, 3, h, w) RGB in [0, 1]; resized to the pictures' size.
        layers: the layers (default: `layers.style_layers(model)`).

    Returns:
        The summed relative Gram distance.

    Example:
        >>> model = vl.load_model()
        >>> c = model.to_image(model.prepare("chelsea", size=64))
        >>> style_distance(model, c, c)
        0.0
    """
    model = as_model(model)
    layers = list(layers or default_style_layers(model))
    s = _fit(style[:1].to(model.device), (pictures.shape[-2], pictures.shape[-1]))
    a = activations(model, model.to_input(pictures[:1]), layers, as_map=True)
    b = activations(model, model.to_input(s), layers, as_map=True)
    total = 0.0
    for n in layers:
        ga, gb = gram(a[n], True), gram(b[n], True)
        total += float((ga - gb).pow(2).sum() / gb.pow(2).sum().clamp(min=1e-20))
    return round(total, 6)


def colour_histogram_distance(pictures: torch.Tensor, style: torch.Tensor, bins: int = 8) -> float:
    """Total-variation distance between the joint RGB histograms (`bins` per channel) of two
    pictures: 0 for the same colours in the same proportions, 1 for no colour in common.

    Args:
        pictures: (1, 3, H, W) RGB in [0, 1].
        style: (1, 3, h, w) RGB in [0, 1]; any size.
        bins: histogram bins per channel.

    Returns:
        Half the L1 distance of the normalized histograms, in [0, 1].

    Example:
        >>> a = torch.zeros(1, 3, 8, 8)
        >>> colour_histogram_distance(a, a), colour_histogram_distance(a, a + 1)
        (0.0, 1.0)
    """

    def hist(p: torch.Tensor) -> torch.Tensor:
        q = (p[0].clamp(0, 1) * bins).long().clamp(max=bins - 1).flatten(1)
        h = torch.bincount((q[0] * bins + q[1]) * bins + q[2], minlength=bins**3).float()
        return h / h.sum()

    return round(float(0.5 * (hist(pictures.detach().cpu()) - hist(style.detach().cpu())).abs().sum()), 6)


__all__ = ["colour_histogram_distance", "style_distance", "style_transfer"]
