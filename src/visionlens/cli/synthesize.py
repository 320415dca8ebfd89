"""Commands that make images by optimization (visualize, dream, invert, texture, style) and
the Gram matrix they match (gram)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ArgumentError, VisionlensError
from .app import app
from .options import ImageArg, ModelSpec, Output, SaveArray, grouped, model_and_layer, out, output_path, stem, wrote
from .parsing import comma_list, int_list

if TYPE_CHECKING:
    import torch

    from ..synthesis.engine import Result

PANEL = "Synthesize"
StepsOpt = Annotated[int, typer.Option("--steps", min=1, help="optimization steps")]
SizeOpt = Annotated[int, typer.Option("--size", min=16, max=4096, help="image size, px")]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed (same seed, same image on CPU)")]
EveryOpt = Annotated[int, typer.Option("--save-every", min=0, help="also write every N-th step as a frame")]
LayerOpt = Annotated[
    str | None,
    typer.Option("--layer", "-l", help="dotted module name (default: chosen from the network's structure)"),
]


def _frames(path: Path, every: int) -> Callable[[int, torch.Tensor], None] | None:
    """An on_frame callback writing PATH-000050.png frames, or None."""
    if not every:
        return None
    from .. import render

    def write(step: int, images: torch.Tensor) -> None:
        render.save_image(path.with_name(f"{path.stem}-{step:06d}.png"), render.hwc(images[0]))

    return write


def _finish(result: Result, path: Path, write: Callable[[Result], Any], save_array: bool) -> None:
    """Write the picture whatever happened; then report NaN (exit 2) or Ctrl-C (exit 130)."""
    write(result)
    wrote(path, result.images, save_array)
    if result.failure:
        raise VisionlensError(f"{result.failure}; wrote {path}")
    if result.interrupted:
        out.print(f"interrupted after {result.steps} steps; wrote {path}")
        sys.exit(130)


def _save_first(path: Path) -> Callable[[Result], Any]:
    """Write the result's first image as a plain PNG."""
    from .. import render

    return lambda r: render.save_image(path, render.hwc(r.images[0]))


@app.command(rich_help_panel=PANEL)
@grouped
def visualize(
    layer: Annotated[str | None, typer.Option("--layer", "-l", help="layer of the unit")] = None,
    unit: Annotated[str | None, typer.Option("--unit", "-u", help="channel(s): 7, 3,5,9 or 0-7")] = None,
    cls: Annotated[str | None, typer.Option("--class", "-c", help="class name or index instead (or several)")] = None,
    diversity: Annotated[int, typer.Option(min=0, help="K different images of one unit")] = 0,
    steps: StepsOpt = 512,
    size: SizeOpt = 128,
    lr: Annotated[float, typer.Option(min=0.0)] = 0.05,
    param: Annotated[str, typer.Option(help="fourier or pixel")] = "fourier",
    seed: SeedOpt = 0,
    save_every: EveryOpt = 0,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Gradient ascent: images that maximally activate a unit, several units, or a class."""
    from .. import render
    from ..synthesis.recipes import visualize as run

    if cls is None and (layer is None or unit is None):
        raise ArgumentError("give --layer and --unit, or --class")
    units = int_list(unit, "unit") if unit is not None else None
    what = f"class-{cls}" if cls is not None else f"{layer}-{unit}"
    path = output_path(output, f"visualize-{what.replace(',', '_').replace(' ', '_')}.png")
    m = spec.load()
    classes = [m.class_index(c) for c in comma_list(cls)] if cls is not None else None
    res = run(
        m,
        layer,
        units,
        classes=classes,
        diversity=diversity,
        size=size,
        steps=steps,
        lr=lr,
        param=param,
        seed=seed,
        progress=True,
        save_every=save_every,
        on_frame=_frames(path, save_every),
    )
    if classes is not None:
        titles = [f"class {c} '{m.short_label(c)}'" for c in classes]
    else:
        assert units is not None
        titles = [f"{layer} unit {u}" for u in (units * diversity if diversity > 1 else units)]

    def write(r: Result) -> None:
        panels = [render.Panel(render.hwc(im), t) for im, t in zip(r.images, titles, strict=False)]
        render.save_figure(
            path, panels, f"{m.name}: feature visualization, {r.steps} steps at {size} px", cols=min(4, len(panels))
        )

    _finish(res, path, write, save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def dream(
    image: ImageArg,
    layer: LayerOpt = None,
    octaves: Annotated[int, typer.Option(min=1)] = 4,
    octave_scale: Annotated[float, typer.Option(min=1.01)] = 1.4,
    steps: Annotated[int, typer.Option(min=1, help="steps per octave")] = 10,
    strength: Annotated[
        float, typer.Option(help="how far the picture may move, (0, 1]: 0.4 keeps the subject, 1 the classic look")
    ] = 0.4,
    lr: Annotated[float | None, typer.Option(min=0.0, help="step size (default: 0.01 x strength)")] = None,
    size: Annotated[int, typer.Option(min=32, max=4096, help="shorter side, px")] = 384,
    tile: Annotated[int, typer.Option(min=64, help="tile size for large images")] = 512,
    seed: SeedOpt = 0,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """DeepDream: amplify what a layer sees in an image, over octaves."""
    from ..synthesis.recipes import dream as run

    m, layer, path = model_and_layer(spec, layer, "dream", output, lambda n: f"{stem(image)}-dream-{n}.png")
    x = m.prepare(image, size=size)
    res = run(
        m, x, layer, octaves=octaves, octave_scale=octave_scale, steps=steps, strength=strength, lr=lr, tile=tile,
        seed=seed, progress=True,
    )  # fmt: skip
    _finish(res, path, _save_first(path), save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def invert(
    image: ImageArg,
    layer: LayerOpt = None,
    steps: StepsOpt = 150,
    tv_weight: Annotated[float, typer.Option("--tv", min=0.0, help="total variation weight")] = 1e-3,
    seed: SeedOpt = 0,
    save_every: EveryOpt = 0,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Feature inversion: reconstruct an image from one layer's features, starting from noise."""
    from .. import render
    from ..images import psnr
    from ..synthesis.recipes import invert as run

    m, layer, path = model_and_layer(spec, layer, "invert", output, lambda n: f"{stem(image)}-invert-{n}.png")
    x = m.prepare(image)
    original = m.to_image(x)
    res = run(
        m,
        x,
        layer,
        steps=steps,
        tv_weight=tv_weight,
        seed=seed,
        progress=True,
        save_every=save_every,
        on_frame=_frames(path, save_every),
    )

    def write(r: Result) -> None:
        render.save_figure(
            path,
            [
                render.Panel(render.hwc(original[0]), "original"),
                render.Panel(render.hwc(r.images[0]), f"from {layer} features, PSNR {psnr(r.images, original):.1f} dB"),
            ],
            f"{m.name}: inversion, {r.steps} steps",
        )

    _finish(res, path, write, save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def gram(
    image: ImageArg,
    layer: LayerOpt = None,
    top: Annotated[int, typer.Option(min=1, help="list this many most correlated channel pairs")] = 10,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """The C x C Gram matrix of a layer as a heatmap, with the most correlated channel pairs."""
    from .. import render
    from ..synthesis.recipes import gram_matrix

    m, layer, path = model_and_layer(spec, layer, "gram", output, lambda n: f"{stem(image)}-gram-{n}.png")
    x = m.prepare(image)
    g = gram_matrix(m, x, layer, top)
    render.save_figure(
        path,
        [
            render.Panel(render.hwc(m.to_image(x)[0]), "input"),
            render.Panel(render.colorize(g.matrix, "magma"), f"Gram matrix {tuple(g.matrix.shape)}"),
            render.Panel(render.diverging(g.correlation), "channel correlation"),
        ],
        f"{m.name}: Gram matrix of {layer}",
    )
    for a, b, c in g.top_pairs:
        out.print(f"  channels {a:4d} and {b:4d}: correlation {c:.3f}")
    wrote(path, g.matrix, save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def texture(
    image: ImageArg,
    size: SizeOpt = 256,
    steps: StepsOpt = 300,
    seed: SeedOpt = 0,
    save_every: EveryOpt = 0,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Texture synthesis: a new image with the source's Gram statistics (Gatys et al. 2015)."""
    from ..synthesis.recipes import texture as run

    path = output_path(output, f"{stem(image)}-texture.png")
    m = spec.load()
    src = m.prepare(image, size=size, square=True)
    res = run(
        m, src, size=size, steps=steps, seed=seed, progress=True, save_every=save_every,
        on_frame=_frames(path, save_every),
    )  # fmt: skip
    _finish(res, path, _save_first(path), save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def style(
    content: ImageArg,
    style_image: Annotated[
        list[str], typer.Argument(metavar="STYLE...", help="style image(s); several are blended by --style-weights")
    ],
    strength: Annotated[
        float, typer.Option(help="0 (the content unchanged) to 1 (the style's statistics throughout)")
    ] = 1.0,
    preserve_colour: Annotated[
        bool, typer.Option("--preserve-colour", help="transfer luminance only; keep the content's colours")
    ] = False,
    style_weights: Annotated[
        str | None, typer.Option(help="one weight per style image, e.g. 2,1 (default: equal)")
    ] = None,
    optimizer: Annotated[str, typer.Option(help="adam, or lbfgs (the papers' optimizer)")] = "adam",
    content_weight: Annotated[float, typer.Option(min=0.0)] = 1.0,
    style_weight: Annotated[float, typer.Option(min=0.0)] = 10.0,
    size: Annotated[int, typer.Option(min=32, max=4096, help="shorter side of the result, px")] = 256,
    steps: StepsOpt = 200,
    seed: SeedOpt = 0,
    save_every: EveryOpt = 0,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Neural style transfer: the content image repainted with the style image's statistics."""
    from ..synthesis.recipes import style_transfer

    if optimizer not in ("adam", "lbfgs"):
        raise ArgumentError(f"--optimizer must be adam or lbfgs, not {optimizer!r}")
    try:
        weights = [float(w) for w in comma_list(style_weights)] if style_weights is not None else None
    except ValueError:
        raise ArgumentError(f"--style-weights must be numbers separated by commas, not {style_weights!r}") from None
    path = output_path(output, f"{stem(content)}-style-{'+'.join(stem(s) for s in style_image)}.png")
    m = spec.load()
    c = m.prepare(content, size=size)
    styles = [m.prepare(s, size=size) for s in style_image]
    res = style_transfer(
        m, c, styles, strength=strength, style_weights=weights, preserve_colour=preserve_colour,
        content_weight=content_weight, style_weight=style_weight, optimizer=optimizer, steps=steps, seed=seed,
        progress=True, save_every=save_every, on_frame=_frames(path, save_every),
    )  # fmt: skip
    _finish(res, path, _save_first(path), save_array)
