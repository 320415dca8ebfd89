"""Random transformations applied to the image before every step, so that the optimum is a
pattern the network sees robustly rather than adversarial noise that only works pixel-exact."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


class RandomTransforms:
    """Pad, then one random affine map per image (translation up to `jitter` px, scale in
    `scale`, rotation up to `degrees`), then a small final jitter; as in lucid's standard set."""

    def __init__(
        self,
        pad: int = 12,
        jitter: int = 8,
        scale: tuple[float, float] = (0.9, 1.1),
        degrees: float = 10.0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.pad, self.jitter, self.scale, self.degrees = pad, jitter, scale, degrees
        self.gen = generator

    def _uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen) * (hi - lo) + lo

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        b = img.shape[0]
        x = F.pad(img, [self.pad] * 4, mode="constant", value=0.5) if self.pad else img
        h, w = x.shape[-2:]
        s = self._uniform(b, *self.scale)
        a = self._uniform(b, -self.degrees, self.degrees) * math.pi / 180
        tx = self._uniform(b, -self.jitter, self.jitter) * 2 / w
        ty = self._uniform(b, -self.jitter, self.jitter) * 2 / h
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = torch.cos(a) / s, -torch.sin(a) / s, tx
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = torch.sin(a) / s, torch.cos(a) / s, ty
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomRoll:
    """Shift the image circularly by up to `max_shift` px (DeepDream's seam-free jitter)."""

    def __init__(self, max_shift: int = 32, generator: torch.Generator | None = None) -> None:
        self.max_shift, self.gen = max_shift, generator

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        dy, dx = (int(v) for v in torch.randint(-self.max_shift, self.max_shift + 1, (2,), generator=self.gen))
        return torch.roll(img, (dy, dx), dims=(-2, -1))
