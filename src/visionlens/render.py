"""Turning arrays into pictures: heatmap overlays, tile grids and captioned figures.

No model math here: inputs are tensors or arrays the techniques returned."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402

from .io import atomic_file  # noqa: E402


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (detached, float, on the CPU) or anything array-like as a NumPy array."""
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def hwc(image: Any) -> np.ndarray:
    """A (3, H, W) or (H, W, 3) image in [0, 1] as float (H, W, 3)."""
    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    return np.clip(a, 0, 1)


def normalize_map(m: Any, percentile: float = 99.5) -> np.ndarray:
    """Scale a non-negative map to [0, 1], clipping the top outliers so a few hot pixels do
    not wash out the rest."""
    a = to_numpy(m).astype(np.float64)
    a = a - min(0.0, float(a.min()))
    hi = float(np.percentile(a, percentile)) if a.size else 0.0
    hi = hi if hi > 0 else float(a.max()) or 1.0
    return np.clip(a / hi, 0, 1)


def colorize(m: Any, cmap: str = "inferno") -> np.ndarray:
    """A non-negative (H, W) map as (H, W, 3) RGB in [0, 1] through a matplotlib colormap,
    scaled as `normalize_map` scales it."""
    return colormaps[cmap](normalize_map(m))[..., :3]


def overlay(image: Any, heat: Any, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """The heatmap blended over the image, weighted by its own strength so cold areas stay
    clear."""
    img = hwc(image)
    h = normalize_map(heat)
    col = colormaps[cmap](h)[..., :3]
    a = alpha * np.sqrt(h)[..., None]
    return np.clip(img * (1 - a) + col * a, 0, 1)


def signed_rgb(grad: Any, spread: float = 0.15) -> np.ndarray:
    """A signed (3, H, W) gradient as an image: grey at zero, colours where it pushes."""
    g = to_numpy(grad).astype(np.float64)
    g = (g - g.mean()) / (g.std() + 1e-12)
    return hwc(np.clip(0.5 + spread * g, 0, 1))


def diverging(m: Any) -> np.ndarray:
    """A signed 2-D array as blue (negative) / white / red (positive)."""
    a = to_numpy(m).astype(np.float64)
    lim = float(np.abs(a).max()) or 1.0
    return colormaps["RdBu_r"]((a / lim + 1) / 2)[..., :3]


def grid(tiles: list[np.ndarray], cols: int | None = None, pad: int = 2, fill: float = 1.0) -> np.ndarray:
    """Equal-size (H, W, 3) tiles in a grid."""
    n = len(tiles)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = tiles[0].shape[:2]
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = t
    return out


def upscale(a: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlargement so small kernels stay crisp."""
    f = max(1, size // max(a.shape[:2]))
    return a.repeat(f, 0).repeat(f, 1)


def thumbnail(image: np.ndarray, size: int, fill: float | tuple[float, float, float] = 1.0) -> np.ndarray:
    """An (H, W, 3) image in [0, 1] fitted into a size x size tile, its aspect ratio kept
    (letterboxed with `fill`, white by default). Small images (under 64 px) are enlarged
    nearest-neighbour, by a whole factor when that fills most of the tile, so 8x8 digits stay
    crisp with square pixels; others are resized bicubically (antialiased when shrunk).

    Args:
        image: (H, W, 3) RGB in [0, 1].
        size: the tile's side, in px.
        fill: the letterbox colour, a grey level or an RGB triple in [0, 1].

    Returns:
        (size, size, 3) float32 RGB in [0, 1], the image centred.

    Example:
        >>> thumbnail(np.zeros((8, 16, 3)), 48)[:, :, 0].mean()  # a 48 x 24 picture, white above and below
        np.float32(0.5)
    """
    from PIL import Image

    img = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    w, h = img.size
    scale = size / max(w, h)
    small = max(w, h) < 64 and scale >= 1
    if small and int(scale) >= 4:  # whole-pixel enlargement: every source pixel the same size
        scale = float(int(scale))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    method = Image.Resampling.NEAREST if small else Image.Resampling.BICUBIC
    fitted = np.asarray(img.resize((nw, nh), method), np.float32) / 255.0
    out = np.empty((size, size, 3), np.float32)
    out[:] = fill
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = fitted
    return out


def filter_tiles(weights: Any) -> list[np.ndarray]:
    """Conv weights (O, I, kh, kw) to one tile per output channel: RGB for first-layer filters
    (each normalized on its own), a blue/red kernel (mean over inputs) for deeper ones."""
    w = to_numpy(weights).astype(np.float64)
    tiles = []
    for k in w:
        if k.shape[0] == 3:
            k = k - k.min()
            tiles.append(upscale(hwc(k / (k.max() or 1.0)), 48))
        else:
            tiles.append(upscale(diverging(k.mean(0)), 48))
    return tiles


def feature_tiles(acts: Any, channels: list[int]) -> list[np.ndarray]:
    """(C, H, W) activations to viridis tiles, all channels on one shared scale."""
    a = to_numpy(acts)
    hi = float(np.percentile(a[channels], 99.5)) or 1.0
    return [colormaps["viridis"](np.clip(a[c] / hi, 0, 1))[..., :3] for c in channels]


@dataclass
class Panel:
    """One captioned picture of a `save_figure` figure: `image` is (H, W, 3) RGB in [0, 1]."""

    image: np.ndarray
    title: str = ""


def save_figure(
    path: str | os.PathLike[str], panels: list[Panel], title: str = "", cols: int | None = None, panel_size: float = 3.2
) -> Path:
    """Captioned panels side by side, written atomically as PNG."""
    cols = cols or len(panels)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size * cols, panel_size * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, panels, strict=False):
        ax.imshow(p.image, interpolation="nearest" if max(p.image.shape[:2]) < 64 else "antialiased")
        ax.set_title(p.title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        with atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """An (H, W, 3) RGB picture in [0, 1] written as an 8-bit PNG, atomically, at its own size;
    returns the path."""
    from PIL import Image

    with atomic_file(path) as f:
        Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(f, format="PNG")
    return Path(path)
