"""One page per chosen layer (filters, Gram matrix, feature visualizations of its first units,
DeepDream and inversion of an image), and the units view that sets every unit's feature
visualization beside a slot for its top dataset patches."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..images import psnr
from ..probe import resolve_layer
from ..render import colorize, diverging, filter_tiles, grid, upscale
from ..synthesis.engine import Result
from ..synthesis.recipes import dream, gram_matrix, invert, visualize
from .context import ReportContext
from .core import Card, Figure, Page, Section, Slot
from .site import slugify

UNIT_PATCHES_SLOT = "unit-patches"
"""The name of the `Slot` on each unit card of units.html that an extension's
`unit_patches` fills with the unit's top dataset patches.

Example:
    >>> from visionlens.report import UNIT_PATCHES_SLOT
    >>> UNIT_PATCHES_SLOT
    'unit-patches'
"""


def _checked(res: Result) -> Result:
    """A Ctrl-C caught inside the engine stops the whole report, not just one picture."""
    if res.interrupted:
        raise KeyboardInterrupt
    return res


def _first_conv(ctx: ReportContext, layer: str) -> tuple[str, nn.Conv2d] | None:
    """The layer's first convolution with a spatial kernel (else its first convolution)."""
    mod = resolve_layer(ctx.model.net, layer)
    convs = [(f"{layer}.{n}" if n else layer, c) for n, c in mod.named_modules() if isinstance(c, nn.Conv2d)]
    spatial = [(n, c) for n, c in convs if max(c.kernel_size) > 1]
    found = spatial or convs
    return found[0] if found else None


def filters_figure(ctx: ReportContext, name: str, conv: nn.Conv2d, limit: int = 64) -> Figure:
    """The first `limit` kernels of convolution `name`: RGB for first-layer filters, a
    blue/red mean over inputs for deeper ones."""
    w = conv.weight.detach()
    o, i, kh, kw = w.shape
    if kh * kw > 1:
        kind = "in RGB, each filter scaled on its own" if i == 3 else "mean over input channels, blue < 0 < red"
        caption = f"The first {min(limit, o)} of {o} kernels ({kh}x{kw}) of {name}, {kind}."

        def draw(a: np.ndarray) -> np.ndarray:
            return grid(filter_tiles(a[:limit]), cols=min(8, min(limit, o)))
    else:
        caption = (
            f"{name} is a 1x1 convolution: its weights as an {o} x {i} matrix (outputs by inputs), blue < 0 < red."
        )

        def draw(a: np.ndarray) -> np.ndarray:
            return upscale(diverging(a[:, :, 0, 0]), 320)

    return ctx.site.figure(
        f"layers/{slugify(name)}-filters",
        {"method": "filters", "layer": name, "shape": f"{o}x{i}x{kh}x{kw}"},
        lambda: w,
        draw,
        title=f"Filters of {name}",
        caption=caption + " Raw array: the weights (out, in / groups, kh, kw).",
        css="pixelated",
    )


def _gram_figures(ctx: ReportContext, layer: str) -> list[Figure]:
    im = ctx.images[0]
    holder: dict[str, torch.Tensor] = {}

    @cache
    def gram() -> None:
        g = gram_matrix(ctx.model, im.x, layer)
        holder["matrix"], holder["corr"] = g.matrix, g.correlation

    c = ctx.shape(layer)[0]
    scale = max(1, 320 // c)
    common = {"layer": layer, "image": im.name}
    return [
        ctx.site.figure(
            f"layers/{slugify(layer)}-gram",
            {"method": "Gram matrix", **common},
            lambda: (gram(), holder["matrix"])[1],
            lambda a: upscale(colorize(a, "magma"), c * scale),
            title=f"Gram matrix of {layer}",
            caption=f"Inner products of the {c} channel maps of {layer} on {im.name}, divided by the number of "
            "positions (magma, clipped at the 99.5th percentile): the style statistics texture synthesis and style "
            "transfer match. Raw array: (C, C).",
            depends=[im.key],
            css="pixelated",
        ),
        ctx.site.figure(
            f"layers/{slugify(layer)}-correlation",
            {"method": "channel correlation", **common},
            lambda: (gram(), holder["corr"])[1],
            lambda a: upscale(diverging(a), c * scale),
            title=f"Channel correlation of {layer}",
            caption="The Gram matrix normalized by its diagonal, G_ij / sqrt(G_ii G_jj): which channels fire together "
            f"on {im.name} (red) or apart (blue). Raw array: (C, C).",
            depends=[im.key],
            css="pixelated",
        ),
    ]


def _item(batch: Callable[[], torch.Tensor], i: int) -> torch.Tensor:
    return batch()[i]


def unit_figures(ctx: ReportContext, layer: str) -> list[Figure]:
    """Feature visualizations of the layer's first units, optimized together in one batch."""
    s = ctx.settings
    units = list(range(min(s.units, ctx.shape(layer)[0])))

    @cache
    def batch() -> torch.Tensor:
        return _checked(visualize(ctx.model, layer, units, steps=s.vis_steps, size=s.vis_size, seed=s.seed)).images

    figs = []
    for u in units:
        fig = ctx.site.figure(
            f"layers/{slugify(layer)}-unit-{u}",
            {
                "method": "feature visualization",
                "layer": layer,
                "unit": u,
                "steps": s.vis_steps,
                "size": s.vis_size,
                "parameterization": "Fourier, decorrelated colour",
                "seed": s.seed,
            },
            functools.partial(_item, batch, u),
            title=f"{layer} unit {u}",
            caption=f"Channel {u} of {layer} maximized by gradient ascent from noise ({s.vis_steps} steps, "
            f"{s.vis_size} px). Raw array: the image in [0, 1], (3, H, W).",
        )
        ctx.unit_figures[(layer, u)] = fig
        figs.append(fig)
    return figs


def _dream_figure(ctx: ReportContext, layer: str) -> Figure:
    s, im = ctx.settings, ctx.images[0]
    return ctx.site.figure(
        f"layers/{slugify(layer)}-dream",
        {
            "method": "DeepDream",
            "layer": layer,
            "image": im.name,
            "octaves": s.dream_octaves,
            "steps per octave": s.dream_steps,
            "seed": s.seed,
        },
        lambda: _checked(
            dream(ctx.model, im.x, layer, octaves=s.dream_octaves, steps=s.dream_steps, seed=s.seed)
        ).images[0],
        title=f"DeepDream of {im.name} at {layer}",
        caption=f"{im.name} changed by normalized gradient ascent on the L2 norm of {layer}'s activations, over "
        f"{s.dream_octaves} octaves (scale 1.4) of {s.dream_steps} steps with random shifts: what the layer "
        "sees in it, amplified. Raw array: the image in [0, 1], (3, H, W).",
        depends=[im.key],
    )


def _invert_figure(ctx: ReportContext, layer: str) -> Figure:
    s, im = ctx.settings, ctx.images[0]
    target = F.interpolate(
        ctx.model.to_image(im.x),
        size=(s.invert_size, s.invert_size),
        mode="bicubic",
        align_corners=False,
        antialias=True,
    ).clamp(0, 1)

    def compute() -> torch.Tensor:
        res = invert(ctx.model, ctx.model.to_input(target), layer, steps=s.invert_steps, seed=s.seed)
        return _checked(res).images[0]

    fig = ctx.site.figure(
        f"layers/{slugify(layer)}-invert",
        {
            "method": "feature inversion",
            "layer": layer,
            "image": im.name,
            "steps": s.invert_steps,
            "size": s.invert_size,
            "optimizer": "L-BFGS on Fourier",
            "seed": s.seed,
        },
        compute,
        title=f"Inversion of {im.name} from {layer}",
        caption=f"From noise, an image whose {layer} features match those of {im.name} at {s.invert_size} px "
        f"(Mahendran & Vedaldi 2015): feature loss plus total-variation and alpha-norm priors, {s.invert_steps} "
        "L-BFGS steps. What survives is what the layer keeps. Raw array: the image in [0, 1], (3, H, W).",
        depends=[im.key],
    )
    got = np.load(ctx.site.root / fig.npy) if fig.npy else None
    if got is not None and got.shape == tuple(target.shape[1:]):
        fig = replace(fig, caption=fig.caption + f" PSNR against the original {psnr(got, target[0]):.1f} dB.")
    return fig


def layer_page(ctx: ReportContext, layer: str) -> Page:
    """The page of one layer: filters, Gram matrix, feature visualizations of its first units,
    DeepDream and inversion."""
    shape = "x".join(map(str, ctx.shape(layer)))
    sections = []
    first = _first_conv(ctx, layer)
    if first is not None:
        sections.append(
            Section(
                "Filters",
                "The layer's first convolution with a spatial kernel.",
                [filters_figure(ctx, *first)],
                id="filters",
            )
        )
    sections.append(
        Section(
            "Gram matrix",
            f"Which channels of {layer} fire together on {ctx.images[0].name}.",
            _gram_figures(ctx, layer),
            id="gram",
        )
    )
    sections.append(
        Section(
            "Feature visualization",
            f"The first {min(ctx.settings.units, ctx.shape(layer)[0])} units (channels): for each, an image that "
            "maximizes the unit's mean activation, found by Adam gradient ascent from noise on a decorrelated Fourier "
            "parameterization under random jitter, scale and rotation (Olah et al. 2017).",
            unit_figures(ctx, layer),
            id="units",
            compact=True,
        )
    )
    sections.append(
        Section(
            "DeepDream and inversion",
            f"An image through the eyes of {layer}.",
            [_dream_figure(ctx, layer), _invert_figure(ctx, layer)],
            id="dream",
        )
    )
    return Page(
        ctx.layer_page(layer), f"Layer {layer}", "Layers", sections, intro=f"Output shape {shape}.", nav_text=layer
    )


def units_page(ctx: ReportContext) -> Page:
    """units.html: every unit's feature visualization beside the slot for its top dataset
    patches, which the extensions' `unit_patches` fill."""
    sections = []
    for layer in ctx.layers:
        figs = [(u, f) for (lay, u), f in sorted(ctx.unit_figures.items()) if lay == layer]
        filled: dict[int, list[Figure]] = {}
        for ext in ctx.extensions:
            if ext.unit_patches is not None:
                for u, more in ext.unit_patches(ctx, layer, [u for u, _ in figs]).items():
                    filled.setdefault(u, []).extend(more)
        cards = [
            Card(
                f"unit {u}",
                [fig],
                [
                    Slot(
                        UNIT_PATCHES_SLOT,
                        "Top dataset patches",
                        "No dataset pass yet: run `visionlens report "
                        "--dataset NAME` to see the image patches that excite this unit most.",
                        filled.get(u, []),
                    )
                ],
                href=f"{ctx.layer_page(layer)}#{fig.anchor}",
                brief=True,
                id=f"{slugify(layer)}-unit-{u}",
            )
            for u, fig in figs
        ]
        sections.append(
            Section(
                layer,
                "Each unit's feature visualization beside its top dataset patches.",
                cards=cards,
                id=slugify(layer),
                compact=True,
            )
        )
    return Page(
        "units.html",
        "Units",
        "Report",
        sections,
        intro="As on OpenAI Microscope: what each unit responds to, synthesized and found in the data.",
    )
