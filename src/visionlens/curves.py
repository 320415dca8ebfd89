"""Drawing the faithfulness numbers: each method's map over the image beside its deletion and
insertion curves, and the cascading randomization figure. No model math here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .plots import _save  # noqa: E402  (PNG atomically, or an array with path None)
from .render import hwc, overlay  # noqa: E402

if TYPE_CHECKING:
    from .attribution.evaluate import Evaluation
    from .attribution.metrics import Randomization


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def evaluation_figure(ev: Evaluation, image: Any, path: str | os.PathLike[str] | None, index: int = 0) -> Any:
    """One row per method: its map over the image, then the deletion and insertion curves of
    every method with this one's drawn bold, AUCs in the captions.

    Args:
        ev: the `Evaluation`.
        image: the image the maps are about, (3, H, W) or (H, W, 3) in [0, 1].
        path: the PNG to write (atomically), or None for the picture as an (H, W, 3) array.
        index: which image of the batch to draw.

    Returns:
        The path written (or the array).

    Example:
        >>> from visionlens.curves import evaluation_figure
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=64)
        >>> ev = vl.evaluate(model, x, ["gradient", "gradcam"], steps=8)
        >>> evaluation_figure(ev, model.to_image(x)[0], "/tmp/vl-eval.png").name
        'vl-eval.png'
    """
    img = hwc(image)
    kinds = [k for k in ("deletion", "insertion") if any(k in s.curves for s in ev.scores)]
    rows = len(ev.scores)
    cols = 1 + len(kinds)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 0.6, 2.6 * rows + 0.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for r, s in enumerate(ev.scores):
        ax = axes[r, 0]
        ax.imshow(overlay(img, s.maps[index].numpy(), "jet", 0.6))
        ax.set_title(f"{s.method} ({s.seconds:.2f} s)", fontsize=9)
        ax.axis("off")
        for c, kind in enumerate(kinds, start=1):
            ax = axes[r, c]
            for j, other in enumerate(ev.scores):
                curve = other.curves.get(kind)
                if curve is None:
                    continue
                mine = other is s
                ax.plot(
                    curve.fractions,
                    curve.scores[index],
                    color=colours(j % 10),
                    lw=2.2 if mine else 0.8,
                    alpha=1.0 if mine else 0.35,
                )
            auc = s.curves[kind].auc[index] if kind in s.curves else None
            better = "lower" if kind == "deletion" else "higher"
            ax.set_title(f"{kind}: AUC {_fmt(auc)} ({better} is better)", fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
            ax.tick_params(labelsize=7)
            if r == rows - 1:
                ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "inserted"), fontsize=8)
            if c == 1:
                ax.set_ylabel(ev.score_kind, fontsize=8)
    fig.suptitle(f"which map to trust: {ev.target.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return _save(fig, path)


def randomization_figure(
    r: Randomization, image: Any, path: str | os.PathLike[str] | None, method: str = "", index: int = 0
) -> Any:
    """The cascading randomization check: the map after each step of re-initialization (from
    the top), and the Spearman rank correlation with the original map per step.

    Args:
        r: the `Randomization`.
        image: the image, (3, H, W) or (H, W, 3) in [0, 1].
        path: the PNG to write (atomically), or None for the picture as an (H, W, 3) array.
        method: the method's name, for the title.
        index: which image of the batch to draw.

    Returns:
        The path written (or the array).

    Example:
        >>> from visionlens.curves import randomization_figure
        >>> from visionlens.attribution.metrics import cascading_randomization
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=64)
        >>> r = cascading_randomization(model, x, lambda m, x, t: vl.saliency(m, x, t), groups=2)
        >>> randomization_figure(r, model.to_image(x)[0], "/tmp/vl-rand.png").name
        'vl-rand.png'
    """
    img = hwc(image)
    steps = len(r.groups)
    fig = plt.figure(figsize=(1.6 * (steps + 1) + 0.4, 4.4))
    grid = fig.add_gridspec(2, steps + 1, height_ratios=[1, 1.1])
    for s in range(steps + 1):
        ax = fig.add_subplot(grid[0, s])
        heat = r.maps[s, index].numpy()
        ax.imshow(overlay(img, heat - heat.min(), "jet", 0.6))  # a flat map shows as no colour at all
        ax.set_title("trained" if s == 0 else f"+{s}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    xs = np.arange(1, steps + 1)
    ax.plot(xs, r.spearman[index], "o-", label="Spearman of the map")
    ax.plot(xs, r.spearman_abs[index], "s--", label="Spearman of |map|")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(xs, [g.split(" .. ")[0] for g in r.groups], rotation=20, ha="right", fontsize=7)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("rank correlation", fontsize=8)
    ax.set_xlabel("re-initialized from the top down to this layer (cumulative)", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"cascading randomization{': ' + method if method else ''} (a trustworthy map changes)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return _save(fig, path)
