"""Commands that look at a network as it is: layers, classify, activations, filters."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .options import ImageArg, ModelSpec, Output, SaveArray, grouped, model_and_layer, out, output_path, stem, wrote
from .parsing import int_list

PANEL = "Inspect"


@app.command(rich_help_panel=PANEL)
@grouped
def layers(
    fields: Annotated[bool, typer.Option(help="measure receptive fields (a few seconds)")] = True,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """List every layer: dotted name, type, output shape and receptive field."""
    from rich.table import Table

    from ..layers import layer_table

    m = spec.load()
    table = Table(title=f"{m.name}, input {m.preprocessing.input_size} px")
    for col in ("layer", "type", "output shape", "kind", "receptive field", "stride"):
        table.add_column(col)
    for info in layer_table(m, fields=fields):
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        kind = info.layout.describe() if info.layout is not None else "-"
        rf, lay = info.field, info.layout
        if rf is not None:
            field, stride = rf.size_text(), str(rf.stride[0])
        elif lay is not None and lay.kind == "tokens" and lay.stride:  # after attention: every patch
            field, stride = "global", str(round(lay.stride))
        else:
            field, stride = "-", "-"
        table.add_row(info.name, info.type, shape, kind, field, stride)
    out.print(table)


@app.command(rich_help_panel=PANEL)
@grouped
def classify(
    images: Annotated[list[str], typer.Argument(help="image files or sample names")],
    top: Annotated[int, typer.Option("--top", "-k", min=1)] = 5,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Top-k predicted classes with probabilities."""
    from ..inspection import classify as top_k

    m = spec.load()
    probs, idx = top_k(m, m.prepare(images), top)
    for name, p, i in zip(images, probs.tolist(), idx.tolist(), strict=True):
        out.print(f"[bold]{name}[/bold]")
        for pi, ii in zip(p, i, strict=True):
            out.print(f"  {pi:6.1%}  {ii:4d}  {m.label(ii)}")


@app.command(rich_help_panel=PANEL)
@grouped
def activations(
    image: ImageArg,
    layer: Annotated[
        str | None,
        typer.Option("--layer", "-l", help="dotted module name (default: a middle layer; see `visionlens layers`)"),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="show the N most active channels")] = 16,
    channels: Annotated[str | None, typer.Option(help="these channels instead: 7, 3,5,9 or 0-7")] = None,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """A layer's feature maps as a grid, beside the input."""
    from .. import render
    from ..inspection import activations as acts_of
    from ..inspection import strongest_channels
    from ..layers import check_units, map_layout

    m, layer, path = model_and_layer(spec, layer, "activations", output, lambda n: f"{stem(image)}-activations-{n}.png")
    layout = map_layout(m, layer)  # a layer that is no map: one line naming some that are
    x = m.prepare(image)
    a = acts_of(m, x, layer, as_map=True)
    if channels:
        chans = int_list(channels, "channels")
        check_units(layer, chans, a.shape[1])
    else:
        chans = strongest_channels(a, top).tolist()
    tiles = render.feature_tiles(a[0], chans)
    panels = [
        render.Panel(render.hwc(m.to_image(x)[0]), "input"),
        render.Panel(
            render.grid([render.upscale(t, 96) for t in tiles]),
            f"{layer}: channels {', '.join(map(str, chans[:8]))}{'...' if len(chans) > 8 else ''}",
        ),
    ]
    render.save_figure(
        path,
        panels,
        f"{m.name} activations of {layer} ({a.shape[1]}x{a.shape[2]}x{a.shape[3]}, {layout.describe()})",
        panel_size=4.5,
    )
    wrote(path, a[0], save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def filters(
    layer: Annotated[str | None, typer.Option("--layer", "-l", help="a Conv2d layer (default: the first)")] = None,
    limit: Annotated[int, typer.Option("--max", min=1, help="at most this many filters")] = 64,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """A convolution's weights as a grid of filters."""
    from .. import render
    from ..inspection import filters as weights_of
    from ..layers import first_conv

    m = spec.load()
    layer = layer or first_conv(m.net)
    path = output_path(output, f"filters-{layer}.png")
    w = weights_of(m, layer)
    kind = "RGB" if w.shape[1] == 3 else "mean over inputs, blue<0<red"
    caption = f"{min(limit, w.shape[0])} of {w.shape[0]} filters, {w.shape[2]}x{w.shape[3]} ({kind})"
    render.save_figure(
        path, [render.Panel(render.grid(render.filter_tiles(w[:limit])), caption)], f"{m.name} {layer}", panel_size=6
    )
    wrote(path, w, save_array)
