"""A picture check for the tests: is this an image a person would keep?

`picture_problems(picture)` returns what is wrong with a PNG (or an array) in words, and
`check_picture` asserts there is nothing. A picture is split into its panels first (the
connected parts that are not the background colour of its border, at least `MIN_PANEL` px on
each side), so a figure's white margins and captions are left out and one grey panel among
good ones is still caught. Problems found:

- blank: nothing but the background; constant: a panel with (almost) no variation;
- saturated: more than `max_clipped` of the panels' pixels (the background colour left out)
  at a corner of the RGB cube (every channel at 0 or 255: black, white, pure red, ...), as an
  optimization pushed into its sigmoid's tails leaves them (8x8 digits on black are meant to
  be: give them a larger `max_clipped`);
- NaN-stained: an array with values that are not finite (a PNG cannot hold NaN: it shows
  black there, which the other checks see);
- stripes: a panel whose detail (frequencies of at least `MIN_CYCLES` cycles across it) puts
  more than `max_stripe` of its energy on a single row or column frequency, as a map whose
  tokens were laid out in the wrong order does (a Grad-CAM heatmap with every other token
  column cold: 0.43; the gallery's pictures: at most 0.28, its blocky 3x3 filter kernels).
  Faint stripes under a photograph's own detail (an overlay) are not caught: check the map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MIN_PANEL = 32  # px on each side: smaller parts are captions, tick labels, legend swatches
MIN_CYCLES = 4  # frequencies slower than this (cycles across the panel) are layout, not stripes


def load(picture: Any) -> np.ndarray:
    """A PNG path or an array as (H, W, 3) float64 in [0, 255] (NaN kept for arrays in
    [0, 1]; (3, H, W) and greyscale accepted)."""
    if isinstance(picture, (str, Path)):
        return np.asarray(Image.open(picture).convert("RGB"), np.float64)
    a = np.asarray(picture, np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    finite = a[np.isfinite(a)]
    if finite.size and finite.max() <= 1.0 + 1e-6:  # pictures in [0, 1]
        a = a * 255.0
    return a


def background(img: np.ndarray) -> np.ndarray | None:
    """The colour of the picture's border when at least 90% of it has that one colour (a
    figure's margin), else None (a plain image)."""
    ring = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    colours, counts = np.unique(ring, axis=0, return_counts=True)
    return colours[counts.argmax()] if counts.max() >= 0.9 * len(ring) else None


def panels(img: np.ndarray) -> list[tuple[slice, slice]]:
    """The bounding boxes of the picture's panels: connected parts unlike the background
    colour, at least MIN_PANEL px on each side. A picture without a background (a plain
    image) is one panel."""
    from scipy import ndimage

    bg = background(img)
    if bg is None:
        return [(slice(0, img.shape[0]), slice(0, img.shape[1]))]
    labels, _ = ndimage.label(np.any(img != bg, axis=-1))
    boxes = ndimage.find_objects(labels)
    return [b for b in boxes if b[0].stop - b[0].start >= MIN_PANEL and b[1].stop - b[1].start >= MIN_PANEL]


def stripe_score(grey: np.ndarray) -> tuple[float, str]:
    """The largest share of a panel's detail energy on one row or column frequency, and
    where: 'period P px across x' (vertical stripes) or '... across y'."""
    h, w = grey.shape
    g = (grey - grey.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(g)) ** 2
    ky = np.abs(np.fft.fftfreq(h) * h)[:, None]
    kx = np.abs(np.fft.fftfreq(w) * w)[None, :]
    detail = np.hypot(ky, kx) >= MIN_CYCLES
    total = float(power[detail].sum())
    if total <= 1e-9:
        return 0.0, ""
    best, where = 0.0, ""
    # a row frequency: kx = f with ky within one cycle of 0 (the stripes' strength may vary along them)
    for axis, k, n in ((0, kx[0], w), (1, ky[:, 0], h)):
        line = power[:2, :].sum(0) + power[-1, :] if axis == 0 else power[:, :2].sum(1) + power[:, -1]
        for f in np.unique(k[k >= MIN_CYCLES]):
            share = float(line[k == f].sum()) / total
            if share > best:
                best, where = share, f"period {n / f:.1f} px across {'x' if axis == 0 else 'y'}"
    return best, where


def picture_problems(picture: Any, *, max_clipped: float = 0.2, max_stripe: float = 0.35) -> list[str]:
    """What is wrong with a picture, in words (empty when nothing is).

    Args:
        picture: a PNG path, or an array ((H, W, 3), (3, H, W) or (H, W); in [0, 1] or [0, 255]).
        max_clipped: the largest allowed share of the panels' pixels at an RGB-cube corner.
        max_stripe: the largest allowed share of a panel's detail energy on one row or column
            frequency.

    Returns:
        One line per problem.
    """
    img = load(picture)
    bad = ~np.isfinite(img).all(-1)
    if bad.any():
        return [f"NaN-stained: {bad.mean():.1%} of the pixels are not finite"]
    img = np.clip(img, 0, 255).round()
    if np.ptp(img.reshape(-1, 3), axis=0).max() == 0:
        return ["constant: every pixel has the same colour"]
    found = panels(img)
    bg = background(img)
    if not found:
        return ["blank: nothing but the background (no part of at least 32 x 32 px)"]
    problems = []
    clipped = total = 0
    for k, (ys, xs) in enumerate(found):
        part = img[ys, xs]
        grey = part @ np.array([0.299, 0.587, 0.114])
        name = f"panel {k + 1} ({part.shape[1]}x{part.shape[0]} at x={xs.start}, y={ys.start})"
        if grey.std() < 1.0:
            problems.append(f"constant: {name} has luminance std {grey.std():.2f}")
            continue
        content = np.ones(grey.shape, bool) if bg is None else np.any(part != bg, axis=-1)
        if content.mean() >= 0.5:  # a picture; a chart is mostly background, its black axes are no clipping
            clipped += int((np.all((part == 0) | (part == 255), axis=-1) & content).sum())
            total += int(content.sum())
        score, where = stripe_score(grey)
        if score > max_stripe:
            problems.append(f"stripes: {name} has {score:.0%} of its detail at one frequency, {where}")
    if total and clipped / total > max_clipped:
        problems.append(f"saturated: {clipped / total:.1%} of the pixels are clipped (over {max_clipped:.0%})")
    return problems


def check_picture(picture: Any, what: str = "", **limits: float) -> None:
    """Assert that `picture` has none of the problems `picture_problems` looks for.

    Args:
        picture: a PNG path or an array.
        what: names the picture in the failure message (default: the path).
        **limits: `max_clipped`, `max_stripe`, passed on.
    """
    problems = picture_problems(picture, **limits)
    assert not problems, f"{what or picture}: " + "; ".join(problems)


def ssim(a: Any, b: Any, win: int = 7) -> float:
    """Structural similarity of two pictures ((H, W, 3), (3, H, W) or paths; [0, 1] or
    [0, 255]), as skimage's `structural_similarity` computes it by default: 7 x 7 uniform
    windows, sample covariances, averaged over channels and the valid interior."""
    from scipy.ndimage import uniform_filter

    x, y = load(a) / 255.0, load(b) / 255.0
    c1, c2 = 0.01**2, 0.03**2
    n = win * win
    scores = []
    for ch in range(3):
        p, q = x[..., ch], y[..., ch]
        mx, my = uniform_filter(p, win), uniform_filter(q, win)
        vx = (uniform_filter(p * p, win) - mx * mx) * n / (n - 1)
        vy = (uniform_filter(q * q, win) - my * my) * n / (n - 1)
        cxy = (uniform_filter(p * q, win) - mx * my) * n / (n - 1)
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        pad = win // 2
        scores.append(float(s[pad:-pad, pad:-pad].mean()))
    return float(np.mean(scores))
