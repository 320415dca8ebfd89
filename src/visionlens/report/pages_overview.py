"""The overview (index) page: the model, its layers, the images and their top-5 predictions,
and the images that could not be read."""

from __future__ import annotations

from ..fields import ReceptiveField
from ..layers import LayerInfo, first_conv
from .context import ReportContext
from .core import Card, Link, Page, Section, Table
from .pages_images import input_figure
from .pages_layers import filters_figure


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def layer_rows(table: list[LayerInfo], chosen: list[str], pages: dict[str, str]) -> tuple[list[list], list[int]]:
    """The layer table's rows (name, linked when it has a page; type; shape; receptive field
    size and stride) and the indices of the chosen layers' rows."""
    rows: list[list] = []
    marked: list[int] = []
    for info in table:
        rf: ReceptiveField | None = info.field
        size = "" if rf is None else rf.size_text()
        name: str | Link = Link(info.name, pages[info.name]) if info.name in pages else info.name
        if info.name in chosen:
            marked.append(len(rows))
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        rows.append([name, info.type, shape, size or "-", "-" if rf is None else str(rf.stride[0])])
    return rows, marked


def overview_page(ctx: ReportContext) -> Page:
    """index.html: the model, its first filters and layer table, the images with their top-5,
    the unreadable files, and the extensions' overview sections."""
    m = ctx.model
    pre = m.preprocessing
    params = sum(p.numel() for p in m.net.parameters())
    model = Section(
        "Model",
        f"{m.name}: {params / 1e6:.2f} M parameters, {len(m.labels) or 'unlabelled'} classes. Input: short side "
        f"resized to {pre.resize} px ({pre.interpolation}), centre crop {pre.input_size} px, normalized with mean "
        f"{tuple(round(v, 3) for v in pre.mean)} and std {tuple(round(v, 3) for v in pre.std)}.",
        id="model",
    )
    try:
        name = first_conv(m.net)
        model.figures.append(filters_figure(ctx, name, dict(m.net.named_modules())[name]))
    except Exception:  # noqa: BLE001 - a model without a convolution simply has no filter picture
        pass
    cards = [
        Card(
            im.name,
            [input_figure(ctx, im)],
            lines=[f"{p:6.1%}  {lab.split(',')[0]} ({c})" for c, lab, p in im.top],
            href=im.page,
            id=f"image-{im.slug}",
            brief=True,
        )
        for im in ctx.images
    ]
    images = Section(
        "Images",
        f"{_n(len(ctx.images), 'image')} and the network's top-5 classes; open one for its activations and "
        "attribution maps.",
        cards=cards,
        id="images",
    )
    sections = [model, images]
    if ctx.skipped:
        sections.append(
            Section(
                "Skipped images",
                f"{len(ctx.skipped)} of the given files could not be read as images and were left out.",
                table=Table(["file", "why"], ctx.skipped),
                id="skipped",
            )
        )
    pages = {layer: ctx.layer_page(layer) for layer in ctx.layers}
    top = [i for i in ctx.layer_table if i.name.count(".") <= 1 or i.name in pages]
    rows, marked = layer_rows(top, ctx.layers, pages)
    sections.append(
        Section(
            "Layers",
            "Modules by their PyTorch names in execution order, with output shape (C x H x W), receptive field on the "
            "input and stride, both in pixels. Highlighted: the layers this report looks at.",
            table=Table(["layer", "type", "output shape", "receptive field", "stride"], rows, marked),
            id="layers",
        )
    )
    rows, marked = layer_rows(ctx.layer_table, ctx.layers, pages)
    sections.append(
        Section(
            f"All {len(ctx.layer_table)} modules",
            table=Table(["layer", "type", "output shape", "receptive field", "stride"], rows, marked),
            id="all-layers",
            collapsed=True,
        )
    )
    for ext in ctx.extensions:
        for builder in ext.overview:
            sections.extend(builder(ctx))
    return Page(
        "index.html",
        "Overview",
        "Report",
        sections,
        intro=f"What {m.name} sees: {_n(len(ctx.images), 'image')}, {_n(len(ctx.layers), 'layer')}.",
    )
