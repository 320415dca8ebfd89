"""One image explained: the attribution map of a method, what it explains, how faithful it is
(deletion and insertion curves) and which units of a layer carry the score. `explain` makes an
`Explanation`, which shows itself in a notebook; `visionlens serve` answers with the same.

The map is any method of `visionlens.attribution.METHODS`; nothing here computes attributions
itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .attribution.methods import CAM_METHODS, attribution
from .attribution.metrics import Curve, deletion_insertion
from .attribution.targets import bind
from .errors import ArgumentError
from .layermaps import to_maps
from .layers import last_spatial_layer, layer_layouts
from .models import Model, as_model
from .probe import Probe


@dataclass
class Explanation:
    """An attribution map of one image with its context; `explain` makes it. In a notebook it
    shows the map over the image, the explained target, the top classes and the faithfulness
    numbers (`_repr_html_`, `_repr_png_`); `map` stays a plain tensor.

    Attributes:
        picture: (3, H, W) what the model saw, RGB in [0, 1], on the CPU.
        map: (H, W) the attribution map, >= 0, on the CPU.
        method: the method's name (`visionlens.attribution.METHODS`).
        layer: the layer of a CAM method, else None.
        target: what the map explains, in words ("class 282 'tiger cat'").
        top: the five most probable classes as (label, probability).
        deletion: the deletion curve (score as the most important pixels go), or None.
        insertion: the insertion curve (score as they come back into a blurred copy), or None.

    Example:
        >>> e = vl.explain(vl.load_model(), "chelsea", "gradcam", steps=4)
        >>> e.map.shape, e.top[0][0], e.deletion_auc < e.insertion_auc
        (torch.Size([224, 224]), 'tiger cat', True)
    """

    picture: torch.Tensor
    map: torch.Tensor
    method: str
    layer: str | None
    target: str
    top: list[tuple[str, float]]
    deletion: Curve | None = None
    insertion: Curve | None = None

    @property
    def deletion_auc(self) -> float | None:
        """Area under the deletion curve (lower: more faithful), or None."""
        return float(self.deletion.auc[0]) if self.deletion is not None else None

    @property
    def insertion_auc(self) -> float | None:
        """Area under the insertion curve (higher: more faithful), or None."""
        return float(self.insertion.auc[0]) if self.insertion is not None else None

    def overlay(self) -> np.ndarray:
        """The map over the picture, (H, W, 3) RGB in [0, 1]."""
        from .render import overlay

        return overlay(self.picture, self.map)

    def _repr_html_(self) -> str:
        return explanation_html(self)

    def _repr_png_(self) -> bytes:
        return explanation_png(self)


def explanation_html(e: Explanation) -> str:
    """The HTML of an `Explanation`: the picture, the map over it, the curves and numbers.

    Args:
        e: the explanation.

    Returns:
        A self-contained HTML fragment.

    Example:
        >>> from visionlens.explanation import explanation_html
        >>> "deletion" in explanation_html(vl.explain(vl.load_model(), "chelsea", steps=4))
        True
    """
    from .display import _img, _page, curves_svg
    from .render import hwc

    picture = hwc(e.picture)
    where = f" at {e.layer}" if e.layer else ""
    figs = _img(picture, "input") + _img(e.overlay(), f"{e.method}{where}")
    if e.deletion is not None and e.insertion is not None:
        figs += f"<figure>{curves_svg(e.deletion.fractions, e.deletion.scores[0], e.insertion.scores[0])}"
        figs += "<figcaption>score as pixels are deleted (red) or inserted (blue)</figcaption></figure>"
    top = ", ".join(f"{label} {p:.1%}" for label, p in e.top)
    faith = ""
    if e.deletion_auc is not None and e.insertion_auc is not None:
        faith = f" · deletion AUC {e.deletion_auc:.3f} (lower: more faithful) · insertion AUC {e.insertion_auc:.3f}"
    return _page(f'<div class="vl-row">{figs}</div>', f"explains {e.target}{faith} · top-5: {top}")


def explanation_png(e: Explanation) -> bytes:
    """The picture of an `Explanation`: the input beside the map over it, as PNG bytes.

    Args:
        e: the explanation.

    Returns:
        PNG bytes.

    Example:
        >>> from visionlens.explanation import explanation_png
        >>> explanation_png(vl.explain(vl.load_model(), "chelsea", faithfulness=False))[:4]
        b'\\x89PNG'
    """
    from .display import png_bytes
    from .render import grid, hwc

    return png_bytes(grid([hwc(e.picture), e.overlay()], cols=2, pad=4))


def explain(
    model: Model | torch.nn.Module,
    image: Any,
    method: str = "gradcam",
    target: Any = None,
    *,
    layer: str | None = None,
    faithfulness: bool = True,
    steps: int = 20,
    **options: Any,
) -> Explanation:
    """Explain one image: the map of `method` for `target`, the top-5 classes, and deletion /
    insertion curves of the map (Petsiuk et al. 2018; `steps` + 1 points each).

    Args:
        model: a `Model` or `nn.Module`.
        image: one image: a path, a bundled sample name, a PIL image, an array, or model input
            (1, 3, H, W) as `model.prepare` makes it.
        method: any name in `visionlens.attribution.METHODS` (gradcam, gradient, ig, ...).
        target: what to explain (a class index or name, a `Contrast`, ...; None: the top-1).
        layer: the layer of a CAM method (default: the last spatial layer).
        faithfulness: compute the deletion and insertion curves.
        steps: points on each curve after the first.
        **options: passed on to the method (`steps` of ig is `ig_steps` here, `samples`, `window`).

    Returns:
        An `Explanation`.

    Example:
        >>> e = vl.explain(vl.load_model(), "coffee", "gradcam", layer="blocks.5", faithfulness=False)
        >>> e.layer, e.target, e.deletion
        ('blocks.5', "class 967 'espresso'", None)
    """
    model = as_model(model)
    x = model.prepare(image)
    if x.shape[0] != 1:
        raise ArgumentError(f"`explain` takes one image, not {x.shape[0]}")
    if method in CAM_METHODS:
        if layer is None:
            with Probe(model.net):  # eval mode for the dry run
                layer = last_spatial_layer(model, x.shape[-1])
        options["layer"] = layer
    elif layer is not None:
        raise ArgumentError(f"`layer` applies to the CAM methods ({', '.join(CAM_METHODS)}), not to {method}")
    if "ig_steps" in options:
        options["steps"] = options.pop("ig_steps")
    with torch.no_grad(), Probe(model.net):
        out = model.net(x)
    bound = bind(model, x, target, output=out)
    probs = out.softmax(-1)[0] if out.ndim == 2 else None
    top: list[tuple[str, float]] = []
    if probs is not None:
        p, c = probs.topk(min(5, probs.numel()))
        top = [(model.label(int(i)), float(v)) for v, i in zip(p, c, strict=True)]
    maps = attribution(model, x, method, target, **options).detach()
    dele = ins = None
    if faithfulness:
        dele, ins = deletion_insertion(model, x, maps, target, steps=steps)
    picture = model.to_image(x)[0].detach().cpu().clamp(0, 1)
    return Explanation(picture, maps[0].float().cpu(), method, layer, bound.label, top, dele, ins)


@dataclass
class Unit:
    """A unit (channel) of a layer and its share of a score on one image.

    Attributes:
        unit: the channel index.
        contribution: Grad-CAM's weight of the channel (its mean gradient) times its summed
            activation: how much the channel adds to the Grad-CAM map, in the score's units.
        activation: (h, w) the channel's activation map on the image, on the CPU.

    Example:
        >>> from visionlens.explanation import top_units
        >>> model = vl.load_model()
        >>> [type(u.unit) for u in top_units(model, model.prepare("chelsea"), "blocks.5", k=2)]
        [<class 'int'>, <class 'int'>]
    """

    unit: int
    contribution: float
    activation: torch.Tensor


def top_units(
    model: Model | torch.nn.Module, x: torch.Tensor, layer: str, target: Any = None, k: int = 12
) -> list[Unit]:
    """The `k` units of `layer` that add most to the target's Grad-CAM map on one image.

    Args:
        model: a `Model` or `nn.Module`.
        x: model input of one image, (1, 3, H, W).
        layer: a layer whose output is a map (any layout).
        target: what to explain (None: the top-1 class).
        k: how many units.

    Returns:
        `Unit`s, largest contribution first.

    Example:
        >>> from visionlens.explanation import top_units
        >>> model = vl.load_model()
        >>> units = top_units(model, model.prepare("chelsea"), "blocks.5", k=3)
        >>> len(units), units[0].contribution >= units[1].contribution, units[0].activation.ndim
        (3, True, 2)
    """
    model = as_model(model)
    x = x.detach().to(model.device).clone().requires_grad_(True)  # parameters are frozen in the probe
    layouts = layer_layouts(model)
    lay = layouts.get(layer)
    if lay is None or not lay.is_map:
        raise ArgumentError(f"layer {layer!r} has no spatial output: units are shown for map layers")
    bound = bind(model, x, target)
    with torch.enable_grad(), Probe(model.net, [layer]) as probe:
        out = model.net(x)
        act = to_maps(layouts, {layer: probe[layer]}, (x.shape[-2], x.shape[-1]))[layer]
        (grad,) = torch.autograd.grad(bound(out).sum(), act)
    weight = grad.mean((2, 3))[0]
    contribution = (weight * act.detach().sum((2, 3))[0]).cpu()
    order = torch.argsort(contribution, descending=True)[: max(1, k)]
    maps = act.detach()[0].cpu()
    return [Unit(int(u), float(contribution[u]), maps[u]) for u in order]


__all__ = ["Explanation", "Unit", "explain", "explanation_html", "explanation_png", "top_units"]
