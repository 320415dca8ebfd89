"""Objectives: what the synthesis engine maximizes.

An `Objective` maps the current state (the image and the captured activations) to a scalar.
The engine MAXIMIZES it. Objectives combine with +, -, unary -, and multiplication or division
by numbers, and describe themselves. Quantities that are naturally losses (total variation,
feature and Gram distances) are returned as positive numbers, so they are subtracted.

Example:
    >>> from visionlens.synthesis.objectives import channel, total_variation
    >>> obj = channel("blocks.4", 7) - 1e-3 * total_variation()
    >>> obj, obj.layers
    (channel(blocks.4, 7) - 0.001 * total_variation(), ('blocks.4',))
    >>> vl.synthesize(vl.load_model(), obj, size=64, steps=8).images.shape
    torch.Size([1, 3, 64, 64])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class State:
    """What an objective sees at one step: `image` is the (B, 3, H, W) picture in [0, 1]
    before the random transforms, `acts` the captured outputs of the objective's layers (for
    the transformed image), `output` the model's logits when an objective needs them."""

    image: torch.Tensor
    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None


class Objective:
    """A scalar to maximize, computed from a `State`, with a description and the layers it
    reads (the engine captures exactly those, and stops the forward pass after the deepest
    unless `needs_output`). Combine objectives with +, -, unary - and * or / by numbers."""

    def __init__(
        self,
        fn: Callable[[State], torch.Tensor],
        description: str,
        layers: Sequence[str] = (),
        needs_output: bool = False,
    ) -> None:
        self.fn = fn
        self.description = description
        self.layers = tuple(dict.fromkeys(layers))
        self.needs_output = needs_output

    def __call__(self, state: State) -> torch.Tensor:
        return self.fn(state)

    def __repr__(self) -> str:
        return self.description

    def _join(self, other: Objective, sign: float, op: str) -> Objective:
        desc = f"{self.description} {op} {other.description}"
        return Objective(
            lambda s: self(s) + sign * other(s),
            desc,
            self.layers + other.layers,
            self.needs_output or other.needs_output,
        )

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            if other == 0:
                return self
            return Objective(
                lambda s: self(s) + other, f"{self.description} + {other:g}", self.layers, self.needs_output
            )
        return self._join(other, 1.0, "+")

    __radd__ = __add__  # sum([...]) starts from 0

    def __sub__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return self + (-other)
        return self._join(other, -1.0, "-")

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, (int, float)):
            return NotImplemented
        desc = self.description if k == 1 else f"{k:g} * {self._wrapped()}"
        return Objective(lambda s: k * self(s), desc, self.layers, self.needs_output)

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)

    def _wrapped(self) -> str:
        return (
            f"({self.description})" if " " in self.description and "(" not in self.description[:1] else self.description
        )


def _per_image_units(units: int | Sequence[int], batch: int) -> torch.Tensor:
    u = [units] if isinstance(units, int) else list(units)
    if len(u) == 1:
        u = u * batch
    if len(u) != batch:
        raise ValueError(f"{len(u)} units for a batch of {batch} images")
    return torch.tensor(u)


def channel(layer: str, unit: int | Sequence[int]) -> Objective:
    """Mean activation of channel `unit` of `layer` (one unit per image when a list)."""

    def fn(s: State) -> torch.Tensor:
        a = s.acts[layer]
        idx = _per_image_units(unit, a.shape[0]).to(a.device)
        picked = a[torch.arange(a.shape[0], device=a.device), idx]  # (B, H, W) of a map, (B,) of a vector
        return picked.reshape(a.shape[0], -1).mean(1).sum()

    return Objective(fn, f"channel({layer}, {unit})", [layer])


def neuron(layer: str, unit: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel `unit` at one position (default: the centre) of `layer`."""

    def fn(s: State) -> torch.Tensor:
        a = s.acts[layer]
        idx = _per_image_units(unit, a.shape[0]).to(a.device)
        yy = a.shape[2] // 2 if y is None else y
        xx = a.shape[3] // 2 if x is None else x
        return a[torch.arange(a.shape[0], device=a.device), idx, yy, xx].sum()

    return Objective(fn, f"neuron({layer}, {unit}, y={y}, x={x})", [layer])


def class_logit(index: int | Sequence[int]) -> Objective:
    """The logit of class `index` (one class per image when a list)."""

    def fn(s: State) -> torch.Tensor:
        out = s.output
        assert out is not None
        idx = _per_image_units(index, out.shape[0]).to(out.device)
        return out[torch.arange(out.shape[0], device=out.device), idx].sum()

    return Objective(fn, f"class_logit({index})", needs_output=True)


def layer_l2(layer: str) -> Objective:
    """Mean squared activation of the whole layer (DeepDream)."""
    return Objective(lambda s: s.acts[layer].pow(2).flatten(1).mean(1).sum(), f"layer_l2({layer})", [layer])


def direction(layer: str, vector: torch.Tensor) -> Objective:
    """Cosine between each position's activation vector and `vector`, averaged over positions."""

    def fn(s: State) -> torch.Tensor:
        a = s.acts[layer]
        v = vector.to(a).view(1, -1, *([1] * (a.dim() - 2)))
        return F.cosine_similarity(a, v, dim=1).flatten(1).mean(1).sum()

    return Objective(fn, f"direction({layer})", [layer])


def feature_loss(layer: str, target: torch.Tensor) -> Objective:
    """||A - T||^2 / ||T||^2: how far the layer's features are from the target's (inversion,
    content loss). Subtract it."""
    t = target.detach()

    def fn(s: State) -> torch.Tensor:
        a = s.acts[layer]
        tt = t.to(a).expand_as(a) if t.shape[0] == 1 else t.to(a)
        return ((a - tt).pow(2).flatten(1).sum(1) / tt.pow(2).flatten(1).sum(1).clamp(min=1e-12)).sum()

    return Objective(fn, f"feature_loss({layer})", [layer])


def gram(acts: torch.Tensor, smooth: bool = False) -> torch.Tensor:
    """(B, C, C) Gram matrices of (B, C, H, W) activations, normalized by H*W. With `smooth`,
    activations first go through a softmax over channels at each position (Wang et al. 2021),
    which makes Gram statistics of non-VGG networks usable for style."""
    a = acts.flatten(2)
    if smooth:
        a = a.softmax(dim=1)
    return a @ a.transpose(1, 2) / a.shape[-1]


def gram_loss(layer: str, target: torch.Tensor, smooth: bool = False) -> Objective:
    """||G(A) - G_T||^2 / ||G_T||^2 for a target Gram matrix (texture, style). Subtract it."""
    t = target.detach()

    def fn(s: State) -> torch.Tensor:
        g = gram(s.acts[layer], smooth)
        tt = t.to(g).expand_as(g) if t.shape[0] == 1 else t.to(g)
        return ((g - tt).pow(2).flatten(1).sum(1) / tt.pow(2).flatten(1).sum(1).clamp(min=1e-20)).sum()

    return Objective(fn, f"gram_loss({layer}{', smooth' if smooth else ''})", [layer])


def colour_stats(pictures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The RGB mean (3,) and covariance (3, 3) of the first of (B, 3, H, W) pictures in [0, 1]."""
    x = pictures.detach()[0].flatten(1)
    mu = x.mean(1)
    xc = x - mu[:, None]
    return mu, xc @ xc.T / x.shape[-1]


def colour_match(
    reference: torch.Tensor | None = None, *, stats: tuple[torch.Tensor, torch.Tensor] | None = None
) -> Objective:
    """Relative distance of the image's RGB mean and covariance from those of `reference`
    ((1, 3, H, W) in [0, 1]), or from given `stats` (mean, covariance) as `colour_stats`
    makes them: the Gram statistics of the pixels themselves. Subtract it."""
    if stats is None:
        if reference is None:
            raise ValueError("give a reference picture or its colour stats")
        stats = colour_stats(reference)
    mu_t, cov_t = stats[0].detach()[None], stats[1].detach()[None]

    def fn(s: State) -> torch.Tensor:
        x = s.image.flatten(2)
        mu = x.mean(2)
        xc = x - mu[..., None]
        cov = xc @ xc.transpose(1, 2) / x.shape[-1]
        m, c = mu_t.to(x), cov_t.to(x)
        d_mu = (mu - m).pow(2).sum(1) / m.pow(2).sum().clamp(min=1e-12)
        d_cov = (cov - c).pow(2).flatten(1).sum(1) / c.pow(2).sum().clamp(min=1e-12)
        return (d_mu + d_cov).sum()

    return Objective(fn, "colour_match()")


def total_variation() -> Objective:
    """Mean absolute difference between neighbouring pixels. Subtract it."""

    def fn(s: State) -> torch.Tensor:
        x = s.image
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        return (dy + dx).sum()

    return Objective(fn, "total_variation()")


def alpha_norm(alpha: float = 6.0) -> Objective:
    """Mean |x - 0.5|^alpha: penalizes extreme pixel values (Mahendran & Vedaldi). Subtract it."""
    return Objective(
        lambda s: (s.image - 0.5).abs().pow(alpha).flatten(1).mean(1).sum() * 2**alpha, f"alpha_norm({alpha:g})"
    )


def blur_penalty(sigma: float = 0.5) -> Objective:
    """Squared difference between the image and a blurred copy. Subtract it."""
    from torchvision.transforms.functional import gaussian_blur

    def fn(s: State) -> torch.Tensor:
        b = gaussian_blur(s.image.detach(), [3, 3], [sigma, sigma])
        return (s.image - b).pow(2).flatten(1).mean(1).sum()

    return Objective(fn, f"blur_penalty({sigma:g})")


def diversity(layer: str) -> Objective:
    """Mean pairwise cosine similarity of the batch's Gram matrices at `layer` (Olah et al.):
    subtract it to make the images of a batch differ from each other."""

    def fn(s: State) -> torch.Tensor:
        g = gram(s.acts[layer]).flatten(1)
        g = F.normalize(g, dim=1)
        sim = g @ g.T
        b = g.shape[0]
        if b < 2:
            return sim.new_zeros(())
        return (sim.sum() - sim.diagonal().sum()) / (b * (b - 1)) * b

    return Objective(fn, f"diversity({layer})", [layer])
