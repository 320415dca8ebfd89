"""One page per image: the input and its predictions, activations of every chosen layer, and
gradient, SmoothGrad, guided backprop, Grad-CAM and occlusion for two classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..attribution import gradcam, guided_backprop, occlusion, saliency, smoothgrad
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
        figures.append(
            ctx.site.figure(
                f"images/{im.slug}/{key}-{target}",
                {**params, "target": label},
                compute,
                draw,
                title=f"{title}, class {m.short_label(target)}",
                caption=caption,
                depends=[im.key],
            )
        )
    return figures


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
        sections.append(
            Section(
                f"Why '{m.short_label(target)}'? ({_pct(p)})",
                f"Attribution maps for {which}, class {target} '{m.label(target)}': which pixels its score depends on.",
                _attribution_figures(ctx, im, target, cam_layer),
                id=f"class-{target}",
                compact=True,
            )
        )
    return Page(
        im.page, im.name, "Images", sections, intro=f"Top class: {m.label(im.top[0][0])} ({_pct(im.top[0][2])})"
    )
