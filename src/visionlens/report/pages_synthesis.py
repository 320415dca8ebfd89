"""The synthesis page: Gram-matrix texture synthesis and neural style transfer on bundled images."""

from __future__ import annotations

import torch

from ..images import image_tensor
from ..io import fingerprint
from ..layers import default_layer
from ..layers import style_layers as default_style_layers
from ..synthesis.recipes import style_transfer, texture
from .context import ReportContext
from .core import Figure, Page, Section
from .pages_layers import _checked
from .site import slugify


def _source(ctx: ReportContext, name: str, size: int, square: bool) -> tuple[Figure, torch.Tensor, str]:
    x = image_tensor(name, size, square=square)
    key = fingerprint(x)
    fig = ctx.site.figure(
        f"synthesis/source-{slugify(name)}-{size}{'-sq' if square else ''}",
        {"image": name, "size": f"{size} px" + (" square crop" if square else " short side")},
        lambda: x[0],
        title=name,
        caption=f"The bundled image {name}, resized to {size} px{' and centre-cropped' if square else ''}. "
        "Raw array: the image in [0, 1], (3, H, W).",
        depends=[key],
    )
    return fig, x, key


def style_layers(ctx: ReportContext) -> tuple[list[str], str]:
    """(style layers, content layer): the recipes' own defaults for this model."""
    return default_style_layers(ctx.model), default_layer(ctx.model, "content")


def _texture_section(ctx: ReportContext, name: str) -> Section:
    s = ctx.settings
    src, x, key = _source(ctx, name, s.texture_size, True)
    used, _ = style_layers(ctx)
    layers = ", ".join(used)
    out = ctx.site.figure(
        f"synthesis/texture-{slugify(name)}",
        {
            "method": "texture synthesis (Gatys et al. 2015)",
            "layers": layers,
            "steps": s.texture_steps,
            "size": s.texture_size,
            "optimizer": "Adam on Fourier",
            "colour match": 1.0,
            "seed": s.seed,
        },
        lambda: _checked(
            texture(
                ctx.model, ctx.model.to_input(x), layers=used, size=s.texture_size, steps=s.texture_steps, seed=s.seed
            )
        ).images[0],
        title=f"Texture of {name}",
        caption=f"From noise, an image whose Gram matrices at {layers} match those of {name}: the same local "
        f"statistics, none of the layout. {s.texture_steps} Adam steps on the decorrelated Fourier "
        "parameterization with a total-variation prior, and the pixels' RGB mean and covariance matched to "
        "the source's. Raw array: the image in [0, 1], (3, H, W).",
        depends=[key],
    )
    return Section(f"Texture: {name}", figures=[src, out], id=f"texture-{slugify(name)}")


def _style_section(ctx: ReportContext, content: str, style: str) -> Section:
    s = ctx.settings
    cfig, c, ckey = _source(ctx, content, s.style_size, False)
    sfig, st, skey = _source(ctx, style, s.style_size, False)
    used, content_layer = style_layers(ctx)
    out = ctx.site.figure(
        f"synthesis/style-{slugify(content)}-{slugify(style)}",
        {
            "method": "style transfer (Gatys et al. 2016)",
            "content layer": content_layer,
            "style layers": ", ".join(used),
            "strength": 1.0,
            "style weight": 10.0,
            "steps": s.style_steps,
            "size": s.style_size,
            "Gram": "plain on the shallower half, softmax-smoothed (Wang et al. 2021) on the deeper",
            "colour": "RGB mean and covariance matched",
            "seed": s.seed,
        },
        lambda: _checked(
            style_transfer(
                ctx.model,
                ctx.model.to_input(c),
                ctx.model.to_input(st),
                content_layer=content_layer,
                style_layers=used,
                steps=s.style_steps,
                seed=s.seed,
            )
        ).images[0],
        title=f"{content} in the style of {style}",
        caption=f"Starting from {content}, Adam steps on the Fourier parameterization keep its {content_layer} "
        f"features while matching the Gram matrices (softmax-smoothed on the deeper layers) and the pixel "
        f"colour statistics of {style}. "
        "Raw array: the image in [0, 1], (3, H, W).",
        depends=[ckey, skey],
    )
    return Section(f"Style: {content} + {style}", figures=[cfig, sfig, out], id=f"style-{slugify(content)}")


def synthesis_page(ctx: ReportContext) -> Page:
    """synthesis.html: texture synthesis of the settings' textures and style transfer of its
    (content, style) pairs."""
    s = ctx.settings
    sections = [_texture_section(ctx, n) for n in s.textures]
    sections += [_style_section(ctx, c, st) for c, st in s.styles]
    return Page(
        "synthesis.html",
        "Texture synthesis and style transfer",
        "Report",
        sections,
        nav_text="Synthesis",
        intro="Images made by matching Gram matrices of the network's features.",
    )
