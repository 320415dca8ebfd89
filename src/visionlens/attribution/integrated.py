"""Integrated Gradients (Sundararajan et al. 2017): the path integral of the gradient from a
baseline image to the input, times their difference.

The (image, step) pairs are flattened and run `internal_batch_size` at a time, so memory is
bounded by that batch and not by `steps`, and several images share batches when they are few.
The quadrature rules are Captum's: Gauss-Legendre by default, or left/right/middle Riemann
sums and the trapezoid rule; with the same rule, steps and baseline the attributions are
Captum's to float precision (tested).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from ..errors import ArgumentError
from ..models import Model, as_model
from ._common import Target, check_positive, input_gradient
from .targets import bind

Rule = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES = ("black", "blur", "uniform", "zero")


def quadrature(steps: int, rule: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points in [0, 1] along the path and their weights for `steps` evaluations.

    Args:
        steps: the number of gradient evaluations per image.
        rule: "gausslegendre", "riemann_left", "riemann_right", "riemann_middle" or
            "riemann_trapezoid".

    Returns:
        (alphas, weights), each of length `steps`; the weights sum to 1.

    Example:
        >>> from visionlens.attribution.integrated import quadrature
        >>> a, w = quadrature(4, "riemann_middle")
        >>> a.tolist(), w.tolist()
        ([0.125, 0.375, 0.625, 0.875], [0.25, 0.25, 0.25, 0.25])
    """
    check_positive(steps=steps)
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (x + 1), 0.5 * w
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ArgumentError("`steps` must be at least 2 for the trapezoid rule")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0, 1, steps), w
    starts = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}
    if rule not in starts:
        raise ArgumentError(f"unknown `rule` {rule!r}; choose one of {', '.join(RULES)}")
    # float32 points spaced as torch.linspace spaces them, as Captum does: a path point that
    # differs in the last bit can land on the other side of a ReLU kink
    first = starts[rule] / steps
    points = torch.linspace(first, first + (steps - 1) / steps, steps).numpy().astype(np.float64)
    return points, np.full(steps, 1.0 / steps)


def make_ig_baseline(model: Model, x: torch.Tensor, kind: str | float | torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The image the path starts from, in model-input units.

    Args:
        model: the `Model` (its normalization says what black is).
        x: model input, (B, 3, H, W).
        kind: "black" (a black picture), "blur" (a strongly blurred copy of each image),
            "uniform" (uniform noise in picture space, seeded), "zero" (zeros in model input:
            the dataset mean colour for a normalized model, Captum's default), a number, or a
            tensor broadcastable to `x`.
        seed: the seed of the "uniform" baseline.

    Returns:
        A (B, 3, H, W) tensor on `x`'s device.

    Example:
        >>> from visionlens.attribution.integrated import make_ig_baseline
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea")
        >>> model.to_image(make_ig_baseline(model, x, "black")).abs().max() < 1e-5
        tensor(True)
    """
    if isinstance(kind, torch.Tensor):
        try:
            return kind.to(x.device, x.dtype).expand_as(x).clone()
        except RuntimeError:
            raise ArgumentError(
                f"a baseline of shape {tuple(kind.shape)} does not fit input {tuple(x.shape)}"
            ) from None
    if isinstance(kind, (int, float)):
        return torch.full_like(x, float(kind))
    if kind == "black":
        return model.to_input(torch.zeros(x.shape[0], 3, *x.shape[2:])).to(x.device, x.dtype)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        sigma = max(x.shape[-2:]) / 16
        k = int(4 * sigma) | 1
        return gaussian_blur(x, [k, k], [sigma, sigma])
    if kind == "uniform":
        gen = torch.Generator().manual_seed(seed)
        return model.to_input(torch.rand(x.shape[0], 3, *x.shape[2:], generator=gen)).to(x.device, x.dtype)
    raise ArgumentError(f"unknown `baseline` {kind!r}; choose one of {', '.join(BASELINES)}, a number or a tensor")


def integrated_gradients(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    baseline: str | float | torch.Tensor = "black",
    steps: int = 50,
    rule: Rule = "gausslegendre",
    internal_batch_size: int = 16,
    softmax: bool = False,
    return_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients: (x - baseline) times the gradient averaged along the straight
    path from the baseline to x.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain: a class index or name, one per image, None for the top-1
            class, or any target of `visionlens.attribution.targets` (a contrast, a region...).
        baseline: where the path starts (see `make_ig_baseline`): "black", "blur", "uniform",
            "zero", a number or a tensor.
        steps: gradient evaluations per image.
        rule: the quadrature rule (see `quadrature`).
        internal_batch_size: path points per forward/backward pass: memory is bounded by it.
        softmax: explain the probability instead of the logit.
        return_delta: also return the completeness gap, sum(attributions) - (score(x) -
            score(baseline)), per image: near 0 when `steps` is enough.

    Returns:
        (B, 3, H, W) signed attributions on the model's device (and the (B,) gaps with
        `return_delta`). `attribution_map` turns them into a (B, H, W) map.

    Example:
        >>> model = vl.load_model()
        >>> attr, gap = vl.integrated_gradients(model, model.prepare("chelsea", size=96), steps=8, return_delta=True)
        >>> attr.shape, gap.shape
        (torch.Size([1, 3, 96, 144]), torch.Size([1]))
    """
    model = as_model(model)
    check_positive(steps=steps, internal_batch_size=internal_batch_size)
    x = x.to(model.device)
    base = make_ig_baseline(model, x, baseline)
    alphas, weights = quadrature(steps, rule)
    bound = bind(model, x, target, softmax)
    b = x.shape[0]
    owners = torch.arange(b).repeat_interleave(steps)  # image of each (image, step) pair
    which = torch.arange(steps).repeat(b)  # step of each pair
    a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    diff = x - base
    total = torch.zeros_like(x)
    for start in range(0, owners.numel(), internal_batch_size):
        idx, k = owners[start : start + internal_batch_size], which[start : start + internal_batch_size]
        dev_idx, dev_k = idx.to(x.device), k.to(x.device)
        points = base[dev_idx] + a[dev_k].view(-1, 1, 1, 1) * diff[dev_idx]
        grad, _, _ = input_gradient(model, points, bound=bound.take(idx))
        assert grad is not None
        total.index_add_(0, dev_idx, grad * w[dev_k].view(-1, 1, 1, 1))
    attr = total * diff
    if not return_delta:
        return attr
    with torch.no_grad():
        ends = bound.take(torch.arange(b).repeat(2))(model.net(torch.cat([x, base])))
    gap = attr.flatten(1).sum(1) - (ends[:b] - ends[b:])
    return attr, gap


def attribution_map(attr: torch.Tensor) -> torch.Tensor:
    """A (B, H, W) map of where signed per-pixel attributions (Integrated Gradients, guided
    backprop) put their weight: the absolute value summed over colour channels.

    Args:
        attr: (B, C, H, W) attributions.

    Returns:
        (B, H, W), >= 0.

    Example:
        >>> from visionlens.attribution.integrated import attribution_map
        >>> attribution_map(torch.tensor([[[[1.0]], [[-2.0]], [[0.5]]]]))
        tensor([[[3.5000]]])
    """
    if attr.ndim != 4:
        raise ArgumentError(f"attributions must be (B, C, H, W), got shape {tuple(attr.shape)}")
    return attr.abs().sum(1)
