"""Image parameterizations: what the optimizer actually changes.

`PixelImage` optimizes RGB values directly (through a sigmoid). `FourierImage` is the
decorrelated parameterization of Olah et al. 2017: a spectrum scaled by 1/frequency (so that
every frequency learns at the same rate and the result has natural-image statistics), colours
decorrelated with the square root of natural images' RGB covariance, then a sigmoid.
Both hold a batch and return images in [0, 1] of shape (B, 3, H, W).
"""

from __future__ import annotations

import torch
from torch import nn

# Square root (U sqrt(S)) of the RGB covariance of the bundled colour photographs, computed by
# `colour_correlation_sqrt()` below; tests check that the two agree.
_COLOUR_SQRT = torch.tensor([[-0.2760, 0.1300, 0.0132], [-0.2420, -0.0359, -0.0384], [-0.2228, -0.1221, 0.0254]])


def colour_correlation_sqrt() -> torch.Tensor:
    """U sqrt(S) of the RGB covariance of the bundled colour photographs (at 128 px)."""
    import numpy as np

    from ..images import sample_image

    names = ["chelsea", "coffee", "astronaut", "rocket", "motorcycle", "grace_hopper", "china", "flower"]
    px = np.concatenate([np.asarray(sample_image(n).resize((128, 128))).reshape(-1, 3) / 255.0 for n in names])
    u, s, _ = np.linalg.svd(np.cov(px.T))
    return torch.tensor(u * np.sqrt(s), dtype=torch.float32)


def _decorrelate(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    m = _COLOUR_SQRT.to(x.device) / _COLOUR_SQRT.norm(dim=0).max()
    if inverse:
        m = torch.linalg.inv(m)
    return torch.einsum("ij,bjhw->bihw", m, x)


def _logit(img: torch.Tensor) -> torch.Tensor:
    img = img.clamp(1e-3, 1 - 1e-3)
    return torch.log(img / (1 - img))


class PixelImage(nn.Module):
    """RGB pixels behind a sigmoid; starts from small noise or from given images."""

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        init: torch.Tensor | None = None,
        std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if init is not None:
            data = _logit(init.detach().clone().float())
        else:
            data = torch.randn(shape, generator=generator) * std
        self.raw = nn.Parameter(data)

    def forward(self) -> torch.Tensor:
        """The current images, (B, 3, H, W) in (0, 1)."""
        return torch.sigmoid(self.raw)


class FourierImage(nn.Module):
    """A 1/f-scaled spectrum with decorrelated colours behind a sigmoid."""

    scale: torch.Tensor  # a buffer: the 1/f scaling of each frequency

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        init: torch.Tensor | None = None,
        decay: float = 1.0,
        std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        b, c, h, w = shape
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freq = torch.sqrt(fy**2 + fx**2)
        scale = 1.0 / torch.clamp(freq, min=1.0 / max(h, w)) ** decay
        # with an orthonormal inverse FFT, a unit-variance spectrum gives unit-variance pixels;
        # the quarter keeps the starting image close to grey
        self.register_buffer("scale", (scale / 4.0).float())
        self.size = (h, w)
        if init is not None:
            spec = torch.fft.rfft2(_decorrelate(_logit(init.detach().float()), inverse=True), norm="ortho")
            data = torch.view_as_real(spec / self.scale.to(spec.device))
        else:
            data = torch.randn(b, c, h, w // 2 + 1, 2, generator=generator) * std
        self.spectrum = nn.Parameter(data)

    def forward(self) -> torch.Tensor:
        """The current images, (B, 3, H, W) in (0, 1)."""
        spec = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfft2(spec, s=self.size, norm="ortho")
        return torch.sigmoid(_decorrelate(img))


class RawImage(nn.Module):
    """Pixels used as they are, clamped to [0, 1] after every step (DeepDream)."""

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        init: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        data = (
            init.detach().clone().float() if init is not None else 0.5 + 0.01 * torch.randn(shape, generator=generator)
        )
        self.raw = nn.Parameter(data)

    def forward(self) -> torch.Tensor:
        """The current images, (B, 3, H, W), in [0, 1] after `constrain`."""
        return self.raw

    @torch.no_grad()
    def constrain(self) -> None:
        """Clamp the pixels to [0, 1] (the engine calls it after every step)."""
        self.raw.clamp_(0, 1)


def make_param(
    kind: str,
    shape: tuple[int, int, int, int],
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """The parameterization named `kind` ("fourier", "pixel" or "raw") for images of `shape`
    (B, 3, H, W), starting from `init` (pictures in [0, 1]) or from noise drawn with
    `generator`; calling the module gives the current images."""
    if kind == "fourier":
        return FourierImage(shape, init, generator=generator)
    if kind == "pixel":
        return PixelImage(shape, init, generator=generator)
    if kind == "raw":
        return RawImage(shape, init, generator=generator)
    from ..errors import ArgumentError

    raise ArgumentError(f"unknown parameterization {kind!r}; choose fourier, pixel or raw")
