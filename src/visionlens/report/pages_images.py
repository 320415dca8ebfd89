"""One page per image: the input and its predictions, activations of every chosen layer,
gradient, SmoothGrad, guided backprop, Grad-CAM and occlusion for two classes, each map with its
deletion and insertion AUC and a "which map to trust" table, and on the first image's page the
cascading randomization sanity check."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..attribution import attribution_map, gradcam, guided_backprop, occlusion, saliency, smoothgrad
from ..attribution.metrics import cascading_randomization, deletion_insertion
from ..curves import randomization_figure
from ..inspection import activations, strongest_channels
from ..render import colorize, feature_tiles, grid, hwc, overlay, signed_rgb, upscale
from .context import ReportContext, ReportImage
from .core import Figure, Page, Section, Table
from .site import slugify


def _pct(p: float) -> str:
    return f"{p:.1%}"


def input_figure(ctx: ReportContext, im: ReportImage) -> Figure:
    """The image as the network sees it (resized, cropped, shown in [0, 1])."""
    m = ctx.model
    size = m.preprocessing.input_size
    return ctx.site.figure(
        f"images/{im.slug}/input",
        {
            "preprocessing": f"short side to {m.preprocessing.resize} px ({m.preprocessing.interpolation}), "
            f"centre crop {size} px"
        },
        lambda: m.to_image(im.x)[0],
        title=im.name,
        caption="The image as the network sees it, after the model's own resize and centre crop. "
        "Raw array: the crop in [0, 1], (3, H, W).",
        depends=[im.key],
    )


def _activation_figure(ctx: ReportContext, im: ReportImage, layer: str) -> Figure:
    n = ctx.settings.channels
    c, h, w = ctx.shape(layer)
    shown = min(n, c)

    def draw(a: np.ndarray) -> np.ndarray:
        chans = strongest_channels(torch.from_numpy(a)[None], n).tolist()
        tiles = [upscale(t, 96) for t in feature_tiles(a, chans)]
        return grid(tiles, cols=min(8, len(tiles)))

    return ctx.site.figure(
        f"images/{im.slug}/act-{slugify(layer)}",
        {"method": "activations", "layer": layer, "channels shown": f"{shown} most active of {c}"},
        lambda: activations(ctx.model, im.x, layer, as_map=True)[0],
        draw,
        title=f"{layer}: activations",
        caption=f"Feature maps ({h}x{w}) of the {shown} channels of {layer} with the largest mean activation on "
        "this image, strongest first, row by row; viridis on one scale shared by all channels. "
        f"Raw array: all {c} channels, (C, H, W).",
        depends=[im.key],
        css="wide",
    )


def _attribution_figures(ctx: ReportContext, im: ReportImage, target: int, cam_layer: str) -> list[Figure]:
    m, s = ctx.model, ctx.settings
    img = hwc(m.to_image(im.x)[0])
    label = f"{target} '{m.short_label(target)}'"
    # (file key, title, parameters, compute the raw array, draw it, caption)
    kinds: list[tuple[str, str, dict[str, Any], Callable[[], Any], Callable[[np.ndarray], np.ndarray], str]] = [
        (
            "gradient",
            "Gradient saliency",
            {"method": "gradient (Simonyan et al. 2014)", "score": "logit"},
            lambda: saliency(m, im.x, target)[0],
            lambda a: colorize(a, "inferno"),
            f"|d logit / d pixel| of class {label}, the maximum over colour channels; bright pixels change the score "
            "most. Raw array: (H, W).",
        ),
        (
            "smoothgrad",
            "SmoothGrad",
            {
                "method": "SmoothGrad (Smilkov et al. 2017)",
                "samples": s.smoothgrad_samples,
                "noise": s.smoothgrad_noise,
                "score": "logit",
            },
            lambda: smoothgrad(m, im.x, target, samples=s.smoothgrad_samples, noise=s.smoothgrad_noise)[0],
            lambda a: colorize(a, "inferno"),
            f"The gradient saliency of class {label} averaged over {s.smoothgrad_samples} copies of the image with "
            f"Gaussian noise of {s.smoothgrad_noise} x its range. Raw array: (H, W).",
        ),
        (
            "guided",
            "Guided backprop",
            {"method": "guided backpropagation (Springenberg et al. 2015)", "score": "logit"},
            lambda: guided_backprop(m, im.x, target)[0],
            signed_rgb,
            f"The input gradient of class {label} with every ReLU passing only positive gradient where its input is "
            "positive; grey is zero, colours show the direction each pixel pushes. Raw array: signed (3, H, W).",
        ),
        (
            "gradcam",
            "Grad-CAM",
            {"method": "Grad-CAM (Selvaraju et al. 2017)", "layer": cam_layer, "score": "logit"},
            lambda: gradcam(m, im.x, target, layer=cam_layer)[0],
            lambda a: overlay(img, a, "jet", 0.6),
            f"Channels of {cam_layer} weighted by their mean gradient for class {label}, summed, ReLU, upsampled "
            "and laid over the image. Raw array: the map at input size, (H, W).",
        ),
        (
            "occlusion",
            "Occlusion",
            {
                "method": "occlusion (Zeiler & Fergus 2014)",
                "window": s.occlusion_window,
                "stride": s.occlusion_stride,
                "baseline": "zero",
                "score": "probability",
            },
            lambda: occlusion(m, im.x, target, window=s.occlusion_window, stride=s.occlusion_stride)[0],
            lambda a: overlay(img, np.clip(a, 0, None), "jet", 0.6),
            f"How much the probability of class {label} drops when a {s.occlusion_window} px grey square covers each "
            f"place (stride {s.occlusion_stride}), averaged per pixel; red areas matter. Raw array: the drop, (H, W).",
        ),
    ]
    if not ctx.guided:  # GELU / SiLU networks: the rule has nothing to act on
        kinds = [k for k in kinds if k[0] != "guided"]
    figures = []
    for key, title, params, compute, draw, caption in kinds:
        fig = ctx.site.figure(
            f"images/{im.slug}/{key}-{target}",
            {**params, "target": label},
            compute,
            draw,
            title=f"{title}, class {m.short_label(target)}",
            caption=caption,
            depends=[im.key],
        )
        auc = _faithfulness(ctx, im, target, fig, f"{key}-{target}")
        extra = {"deletion AUC": f"{auc['deletion']:.3f}", "insertion AUC": f"{auc['insertion']:.3f}"}
        figures.append(dataclasses.replace(fig, params={**fig.params, **extra}))
    return figures


def _faithfulness(ctx: ReportContext, im: ReportImage, target: int, fig: Figure, key: str) -> dict[str, float]:
    """Deletion and insertion AUC of a figure's map (its raw array), cached beside it."""
    steps = ctx.settings.metric_steps

    def compute() -> dict[str, float]:
        assert fig.npy is not None
        raw = torch.from_numpy(np.load(ctx.site.root / fig.npy))
        maps = attribution_map(raw[None]) if raw.ndim == 3 else raw[None]  # guided backprop is (3, H, W)
        d, i = deletion_insertion(ctx.model, im.x, maps, target, steps=steps)
        return {"deletion": float(d.auc[0]), "insertion": float(i.auc[0])}

    return ctx.site.cached_json(
        f"images/{im.slug}/{key}-faithfulness",
        {"metric": "deletion and insertion (Petsiuk et al. 2018)", "steps": steps, "map": fig.npy},
        compute,
        depends=[im.key, json.dumps(dict(fig.params), sort_keys=True, default=str)],
    )


def trust_table(figures: list[Figure]) -> Table:
    """Which map to trust: each map's deletion and insertion AUC side by side, the most
    faithful value of each column marked with a star."""
    names = [f.title.split(",")[0] for f in figures]
    dele = [float(f.params["deletion AUC"]) for f in figures]
    ins = [float(f.params["insertion AUC"]) for f in figures]
    low, high = min(dele), max(ins)
    rows = list(zip(names, dele, ins, strict=True))
    return Table(
        ["method", "deletion AUC (lower is better)", "insertion AUC (higher is better)"],
        [[r[0], f"{r[1]:.3f}{' *' * (r[1] == low)}", f"{r[2]:.3f}{' *' * (r[2] == high)}"] for r in rows],
    )


def sanity_section(ctx: ReportContext, im: ReportImage) -> Section:
    """Cascading randomization (Adebayo et al. 2018) of the gradient and Grad-CAM on one image:
    maps that do not change as the network is destroyed do not explain it."""
    m, s = ctx.model, ctx.settings
    target = im.top[0][0]
    methods: dict[str, Callable[[Any, torch.Tensor, Any], torch.Tensor]] = {
        "gradient": lambda mm, x, t: saliency(mm, x, t),
        "Grad-CAM": lambda mm, x, t: gradcam(mm, x, t, layer=ctx.cam_layer),
    }
    figures = []
    for name, method in methods.items():
        done: dict[str, Any] = {}  # the site draws right after computing: the result passes through here

        def compute(method: Any = method, done: dict[str, Any] = done) -> np.ndarray:
            done["r"] = cascading_randomization(m, im.x, method, target, groups=s.sanity_groups, seed=s.seed)
            return np.concatenate([done["r"].spearman, done["r"].spearman_abs])

        def draw(raw: np.ndarray, name: str = name, done: dict[str, Any] = done) -> np.ndarray:
            return randomization_figure(done["r"], m.to_image(im.x)[0], None, name)

        figures.append(
            ctx.site.figure(
                f"images/{im.slug}/sanity-{slugify(name)}",
                {
                    "method": name,
                    "check": "cascading randomization (Adebayo et al. 2018)",
                    "groups": s.sanity_groups,
                    "target": f"{target} '{m.short_label(target)}'",
                },  # fmt: skip
                compute,
                draw,
                title=f"Sanity check: {name}",
                caption=f"The {name} map of class '{m.short_label(target)}' as the network's layers are re-initialized "
                "from the top, one group more at a time (He-normal weights), and the Spearman rank correlation of "
                "each map with the trained network's. A map that keeps its look while the network is destroyed "
                "shows the image, not the network. Raw array: the correlations per step (of the map, then of |map|).",
                depends=[im.key],
                css="wide",
            )
        )
    return Section(
        "Sanity check: cascading randomization",
        "Adebayo et al. (2018): re-initialize the layers from the top and watch the map; a faithful map changes.",
        figures,
        id="sanity",
    )


def image_page(ctx: ReportContext, im: ReportImage) -> Page:
    """The page of one image: input and top-5, activations, and every attribution method
    (gradient, SmoothGrad, guided backprop, Grad-CAM, occlusion) for two classes."""
    m = ctx.model
    cam_layer = ctx.cam_layer
    head = Section(
        "Input and predictions",
        figures=[input_figure(ctx, im)],
        table=Table(
            ["rank", "class", "label", "probability"],
            [(i + 1, c, lab, _pct(p)) for i, (c, lab, p) in enumerate(im.top)],
        ),
        id="input",
    )
    acts = [_activation_figure(ctx, im, layer) for layer in ctx.layers]
    sections = [head, Section("Activations", "What each chosen layer computes on this image.", acts, id="acts")]
    for rank, (target, _label, p) in enumerate(im.top[:2]):
        which = "the predicted class" if rank == 0 else "the second most likely class"
        figures = _attribution_figures(ctx, im, target, cam_layer)
        sections.append(
            Section(
                f"Why '{m.short_label(target)}'? ({_pct(p)})",
                f"Attribution maps for {which}, class {target} '{m.label(target)}': which pixels its score depends on. "
                f"Under each map, its deletion and insertion AUC ({ctx.settings.metric_steps} steps; the class "
                "probability as the most important pixels are removed from the image, or put into a blurred copy); "
                "the table says which map to trust for this image (* marks the most faithful).",
                figures,
                table=trust_table(figures),
                id=f"class-{target}",
                compact=True,
            )
        )
    if ctx.images and im is ctx.images[0]:
        sections.append(sanity_section(ctx, im))
    return Page(
        im.page, im.name, "Images", sections, intro=f"Top class: {m.label(im.top[0][0])} ({_pct(im.top[0][2])})"
    )
