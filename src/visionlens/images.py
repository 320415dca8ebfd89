"""Reading images: any file or mode to RGB, EXIF orientation, bundled sample images."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

if TYPE_CHECKING:
    import torch

# PIL's default guard (about 89 Mpx) lets an ordinary 8000x6000 photo through and stops
# decompression bombs; we turn its warning zone into a hard error above twice that size.
Image.MAX_IMAGE_PIXELS = 120_000_000


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# Colour photographs that ship inside installed packages: usable offline everywhere.
SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "astronaut": _skimage("astronaut"),
    "rocket": _skimage("rocket"),
    "motorcycle": lambda: _stereo_left(),
    "hubble": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "grace_hopper": _grace_hopper,
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}
"""The bundled sample photographs: name -> a function reading it as a uint8 array, (H, W, 3)
or, for the grey textures brick, grass and gravel, (H, W).

Example:
    >>> from visionlens.images import SAMPLES
    >>> SAMPLES["coffee"]().shape
    (400, 600, 3)
"""


def _stereo_left() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]


def sample_names() -> list[str]:
    """The names of the bundled sample photographs, sorted.

    Returns:
        Names `sample_image` and every image argument accept ('astronaut', 'brick', ...).

    Example:
        >>> "chelsea" in vl.sample_names()
        True
    """
    return sorted(SAMPLES)


def sample_image(name: str) -> Image.Image:
    """A bundled sample image by name, as RGB. The photographs ship inside installed packages
    (scikit-image, scikit-learn, matplotlib), so they work offline.

    Args:
        name: one of `sample_names()`.

    Returns:
        The image as an 8-bit RGB PIL image at its own size.

    Example:
        >>> vl.sample_image("chelsea").size
        (451, 300)
    """
    if name not in SAMPLES:
        raise ImageError(f"unknown sample image {name!r}; choose one of: {', '.join(sample_names())}")
    return to_rgb(Image.fromarray(np.asarray(SAMPLES[name]())))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and float images are rescaled, alpha is put on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F" and a.max() <= 1.0:
            hi = 1.0
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
        img = Image.fromarray(a, "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def load_image(source: str | os.PathLike[str] | Image.Image | np.ndarray) -> Image.Image:
    """Read an image file (or the name of a bundled sample) as an upright RGB PIL image.
    EXIF orientation is applied; 16-bit, float, palette and alpha images become 8-bit RGB
    (alpha on white). A missing, empty, truncated or oversized file is an `ImageError`.

    Args:
        source: a file path, a bundled sample name, a PIL image or an (H, W) / (H, W, 3|4)
            uint8 array.

    Returns:
        An RGB PIL image at the file's own size (use `model.prepare` for model input).

    Example:
        >>> img = vl.load_image("coffee")
        >>> img.mode, img.size
        ('RGB', (600, 400))
    """
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return to_rgb(Image.fromarray(source))
    path = Path(source)
    if not path.exists():
        if str(source) in SAMPLES:
            return sample_image(str(source))
        raise ImageError(f"{path}: no such file (bundled samples: {', '.join(sample_names())})")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory; give an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes); give a real image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                img = ImageOps.exif_transpose(im) or im
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: image too large to read safely ({e}); downscale it first") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read (PNG, JPEG, TIFF, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or truncated image ({e})") from None


def image_tensor(
    source: str | os.PathLike[str] | Image.Image | np.ndarray, size: int | None = None, square: bool = False
) -> torch.Tensor:
    """An image as a (1, 3, H, W) float tensor in [0, 1]. `size` sets the shorter side
    (bicubic); `square` then centre-crops to size x size. This is a picture, not model input:
    `model.to_input` normalizes it (or use `model.prepare(source, size=...)` directly).

    Args:
        source: a file path, a bundled sample name, a PIL image or an array (see `load_image`).
        size: the shorter side, in px; None keeps the image's own size.
        square: with `size`, centre-crop to size x size.

    Returns:
        (1, 3, H, W) float32 RGB in [0, 1], on the CPU.

    Example:
        >>> vl.image_tensor("chelsea", 96).shape, vl.image_tensor("chelsea", 96, square=True).shape
        (torch.Size([1, 3, 96, 144]), torch.Size([1, 3, 96, 96]))
    """
    import torch
    from torchvision.transforms import functional as TF

    img = load_image(source)
    if size is not None:
        img = TF.resize(img, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        if square:
            img = TF.center_crop(img, [size, size])
    return TF.to_tensor(img).unsqueeze(0).to(torch.float32)


def psnr(image: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """Peak signal-to-noise ratio, in dB, of a picture against a reference of the same shape,
    both in [0, 1] (tensors on any device, or arrays). Identical pictures give 120 dB."""
    import torch

    a, b = (
        v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)
        for v in (image, reference)
    )
    mse = float(((a - b) ** 2).mean())
    return float(10 * np.log10(1 / max(mse, 1e-12)))
