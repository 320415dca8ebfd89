"""Drawing dataset views: neighbour grids, labelled scatter plots, image mosaics and top-patch
grids. No model math here; inputs are arrays and small result objects."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patches as mpatches  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from .io import atomic_file  # noqa: E402
from .render import save_image, thumbnail  # noqa: E402

GOOD, BAD = "#1a9850", "#d73027"


def _save(fig: plt.Figure, path: str | os.PathLike[str] | None, dpi: int = 100) -> Any:
    """Write the figure as PNG (atomically); with path None return it as an (H, W, 3) array."""
    try:
        if path is None:
            fig.set_dpi(dpi)
            canvas = fig.canvas
            if not isinstance(canvas, FigureCanvasAgg):  # pyplot makes Agg canvases here (matplotlib.use above)
                canvas = FigureCanvasAgg(fig)
            canvas.draw()
            return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
        with atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=dpi, facecolor="white")
        return Path(path)
    finally:
        plt.close(fig)


def _show(ax: plt.Axes, img: np.ndarray, title: str = "", color: str | None = None) -> None:
    ax.imshow(img, interpolation="nearest" if max(img.shape[:2]) < 64 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(color is not None)
        if color is not None:
            s.set_color(color)
            s.set_linewidth(3)
    if title:
        ax.set_title(title, fontsize=7, pad=2)


def neighbor_grid(
    path: str | os.PathLike[str] | None,
    queries: Sequence[np.ndarray],
    query_titles: Sequence[str],
    feature: Sequence[Sequence[tuple[np.ndarray, str, bool | None]]],
    pixel: Sequence[Sequence[tuple[np.ndarray, str, bool | None]]],
    title: str,
) -> Any:
    """One row per query: the query, its feature-space neighbours, then its pixel-space
    neighbours. Each neighbour is (image, caption, same label?) ; the frame is green for the
    same label, red for another, none when unknown."""
    k = max(len(r) for r in feature)
    cols = 1 + k + 1 + k
    rows = len(queries)
    fig = plt.figure(figsize=(0.95 * cols, 1.1 * rows + 0.7))
    gs = fig.add_gridspec(rows, cols, width_ratios=[1] + [1] * k + [0.25] + [1] * k, wspace=0.08, hspace=0.35)
    h = 1.1 * rows + 0.7
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.55 / h, bottom=0.3 / h)
    heads: dict[str, list[plt.Axes]] = {"feature": [], "pixel": []}
    for r in range(rows):
        _show(fig.add_subplot(gs[r, 0]), queries[r], query_titles[r], "#222222")
        for j, (img, cap, same) in enumerate(feature[r]):
            ax = fig.add_subplot(gs[r, 1 + j])
            _show(ax, img, cap, None if same is None else GOOD if same else BAD)
            heads["feature"].append(ax)
        for j, (img, cap, same) in enumerate(pixel[r]):
            ax = fig.add_subplot(gs[r, 2 + k + j])
            _show(ax, img, cap, None if same is None else GOOD if same else BAD)
            heads["pixel"].append(ax)
    for key, text in (("feature", "nearest in feature space"), ("pixel", "nearest in pixel space")):
        boxes = [a.get_position() for a in heads[key]]
        x = (min(b.x0 for b in boxes) + max(b.x1 for b in boxes)) / 2
        fig.text(x, 1 - 0.2 / h, text, ha="center", va="top", fontsize=10, weight="bold")
    fig.text(0.5, 0.05 / h, title, ha="center", va="bottom", fontsize=8)
    return _save(fig, path)


def _palette(n: int) -> list[tuple[float, ...]]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def scatter(
    path: str | os.PathLike[str] | None,
    coords: np.ndarray,
    labels: Sequence[int] | None,
    names: Sequence[str],
    title: str,
    max_legend: int = 20,
) -> Any:
    """Points coloured by label (or one colour), with a legend of the largest classes."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    n = len(coords)
    s = float(np.clip(3000 / max(n, 1), 2, 60))
    if labels is None or len(names) == 0:
        ax.scatter(coords[:, 0], coords[:, 1], s=s, c="#3b6ea5", alpha=0.8, linewidths=0)
    else:
        lab = np.asarray(labels)
        classes, counts = np.unique(lab[lab >= 0], return_counts=True)
        colors = _palette(len(classes))
        order = np.argsort(-counts)
        handles = []
        for rank, ci in enumerate(order):
            c = classes[ci]
            m = lab == c
            ax.scatter(coords[m, 0], coords[m, 1], s=s, color=colors[ci], alpha=0.8, linewidths=0)
            if rank < max_legend:
                handles.append(mpatches.Patch(color=colors[ci], label=f"{names[c]} ({counts[ci]})"))
        if (lab < 0).any():
            ax.scatter(coords[lab < 0, 0], coords[lab < 0, 1], s=s, c="#aaaaaa", alpha=0.6, linewidths=0)
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    # wrapped to the axes' width (about 14 characters an inch at 9 pt): a long line was cut at the sides
    ax.set_title("\n".join(textwrap.fill(line, 75) for line in title.splitlines()), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def mosaic(
    path: str | os.PathLike[str] | None,
    cells: np.ndarray,
    rows: int,
    cols: int,
    tile: Callable[[int], np.ndarray],
    tile_size: int = 48,
    gap: int | None = None,
) -> Any:
    """Images laid on a rows x cols grid: point i goes to cells[i] = (row, col). Each tile
    keeps its image's aspect ratio (letterboxed in white, as `render.thumbnail` fits it), at
    any `tile_size`. The white gutter between tiles is `gap` px (default: a sixteenth of the
    tile, at least 2): with 1 px, 8x8 digits on black ran together into vertical strips once
    the mosaic was shown smaller than its size. Written as PNG, or returned as an array when
    path is None."""
    gap = max(2, tile_size // 16) if gap is None else gap
    step = tile_size + gap
    canvas = np.ones((rows * step - gap, cols * step - gap, 3), np.float32)
    for i, (r, c) in enumerate(cells):
        canvas[r * step : r * step + tile_size, c * step : c * step + tile_size] = thumbnail(tile(i), tile_size)
    return canvas if path is None else save_image(path, canvas)


def patch_grid(
    path: str | os.PathLike[str],
    units: Sequence[int],
    patches: Sequence[Sequence[tuple[np.ndarray, str]]],
    title: str,
    lead: Sequence[np.ndarray] | None = None,
) -> Path:
    """One row per unit: optional leading picture (e.g. the unit's feature visualization),
    then its top patches, each captioned (activation value)."""
    k = max((len(p) for p in patches), default=1)
    extra = 1 if lead is not None else 0
    cols = k + extra
    rows = len(units)
    width = 1.15 * cols + 0.6
    # the title wraps to the figure's width (about 14 characters an inch at 9 pt): few columns
    # must not cut it at the sides
    title = "\n".join(textwrap.fill(line, max(20, int(width * 14))) for line in title.splitlines())
    head = 0.2 + 0.16 * (title.count("\n") + 1)  # inches for the title
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.25 * rows + head), squeeze=False)
    for r, u in enumerate(units):
        for ax in axes[r]:
            ax.axis("off")
        if lead is not None:
            _show(axes[r, 0], lead[r], "visualization")
            axes[r, 0].axis("on")
        for j, (img, cap) in enumerate(patches[r]):
            _show(axes[r, extra + j], img, cap)
            axes[r, extra + j].axis("on")
        axes[r, 0].text(
            -0.12,
            0.5,
            f"unit {u}",
            transform=axes[r, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
            weight="bold",
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0.02, 0, 1, 1 - head / (1.25 * rows + head)))
    return _save(fig, path)
