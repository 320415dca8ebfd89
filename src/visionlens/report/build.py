"""`build_report`: run the techniques, write the figures, then the pages, then index.html."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..attribution import has_guided_rule
from ..errors import ArgumentError
from ..fields import ReceptiveField
from ..io import model_fingerprint
from ..layers import LayerInfo, last_spatial_layer, layer_layouts, layer_table, map_layout, spread_layers
from ..loading import load_model
from ..models import Model, as_model
from ..progress import Progress
from .context import DEFAULT_IMAGES, QUICK_IMAGES, Extension, ReportContext, expand_images, load_images
from .core import Page, Settings
from .html import Renderer, navigation
from .pages_images import image_page
from .pages_layers import layer_page, units_page
from .pages_overview import overview_page
from .pages_synthesis import synthesis_page
from .site import Site, Stats


@dataclass
class Report:
    """What `build_report` wrote.

    Attributes:
        index: the path of index.html.
        pages: the file names of every page, index.html last.
        layers: the layers that got a page.
        images: the names of the images shown.
        skipped: (name, why) of the images that could not be read.
        stats: how many figures were computed and how many reused from an earlier run.
        left_out: images beyond `max_images`.

    Example:
        >>> small = vl.report.Settings.quick(units=2, vis_steps=8, vis_size=64, dream_octaves=1, dream_steps=2,
        ...                                  invert_steps=4, textures=(), styles=())
        >>> report = vl.build_report(images=["chelsea"], layers=["blocks.2"], out_dir="report", settings=small)
        >>> report.pages[0], report.layers, report.index.name
        ('image-chelsea.html', ['blocks.2'], 'index.html')
    """

    index: Path
    pages: list[str]
    layers: list[str]
    images: list[str]
    skipped: list[tuple[str, str]]
    stats: Stats
    left_out: int = 0


def _table(site: Site, model: Model) -> list[LayerInfo]:
    def compute() -> list[Any]:
        return [
            [
                i.name,
                i.type,
                list(i.shape) if i.shape else None,
                None
                if i.field is None
                else [list(i.field.size), list(i.field.stride), list(i.field.offset), i.field.clipped],
            ]
            for i in layer_table(model)
        ]

    rows = site.cached_json("model/layers", {"input": model.preprocessing.input_size}, compute)
    layouts = layer_layouts(model)  # one dry run: not worth caching
    out = []
    for name, kind, shape, rf in rows:
        field = None if rf is None else ReceptiveField(tuple(rf[0]), tuple(rf[1]), tuple(rf[2]), bool(rf[3]))
        out.append(LayerInfo(name, kind, tuple(shape) if shape else None, field, layouts.get(name)))
    return out


def _one(builder: Callable[..., Page], *args: Any) -> Callable[[], list[Page]]:
    """A job making the one page `builder(*args)`."""
    return lambda: [builder(*args)]


def _check_layers(model: Model, table: list[LayerInfo], layers: Sequence[str]) -> list[str]:
    maps = {i.name for i in table if i.is_map}
    for layer in layers:
        if layer not in maps:
            map_layout(model, layer)  # a one-line error: no such layer (closest names), or no map
    return list(dict.fromkeys(layers))


def build_report(
    model: Model | nn.Module | str = "efficientnet_lite0",
    images: Sequence[str | os.PathLike[str]] | None = None,
    layers: Sequence[str] | None = None,
    out_dir: str | os.PathLike[str] = "report",
    *,
    quick: bool = False,
    settings: Settings | None = None,
    extensions: Sequence[Extension] = (),
    dataset: str | None = None,
    max_images: int | None = None,
    progress: bool = False,
) -> Report:
    """Write a static HTML report of `model` on `images` into `out_dir`, and return what was
    written.

    Figures already in `out_dir` with the same key are reused; nothing else there is touched.
    Pages are written after every figure, and index.html last, each atomically: a run that
    stops half-way leaves the previous report as it was.

    Args:
        model: a `Model`, an `nn.Module`, or a spec `load_model` takes.
        images: image files, folders (their files) or bundled sample names; default:
            `DEFAULT_IMAGES` (`QUICK_IMAGES` when quick).
        layers: layers with a spatial output that get a page; default: two or three spread
            over the network's depth.
        out_dir: the report folder (made when missing).
        quick: lighter settings and fewer images (about two minutes on 2 CPU cores).
        settings: how much work each technique does (default: `Settings()` or
            `Settings.quick()`).
        extensions: what technique packages add (pages, overview sections, unit patches).
        dataset: a dataset name handed to extensions as `ctx.dataset`.
        max_images: show at most this many images (the rest are counted in `left_out`).
        progress: show a progress display.

    Returns:
        A `Report`: the path of index.html, the pages, layers and images, and the cache stats.

    Example:
        A first look in seconds (`quick=True` instead of `settings`: about two minutes):

        >>> small = vl.report.Settings.quick(units=2, vis_steps=8, vis_size=64, dream_octaves=1, dream_steps=2,
        ...                                  invert_steps=4, textures=(), styles=())
        >>> report = vl.build_report("efficientnet_lite0", ["chelsea"], ["blocks.2"], "report", settings=small)
        >>> report.images, report.index
        (['chelsea'], PosixPath('report/index.html'))
    """
    model = load_model(model) if isinstance(model, str) else as_model(model)
    settings = settings or (Settings.quick() if quick else Settings())
    sources = expand_images(list(images) if images else list(QUICK_IMAGES if quick else DEFAULT_IMAGES))
    left_out = 0
    if max_images is not None:
        if max_images < 1:
            raise ArgumentError("`max_images` must be at least 1")
        left_out = max(0, len(sources) - max_images)
        sources = sources[:max_images]
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ArgumentError(f"{root}: exists and is not a folder; give a folder for the report")
    good, skipped = load_images(model, sources)  # unreadable images fail before any slow work
    site = Site(root, model_fingerprint(model.net, model.name))
    shapes = layer_table(model, fields=False)  # one dry run: enough to check and choose layers
    chosen = _check_layers(model, shapes, layers) if layers else spread_layers(model.net, shapes, 2 if quick else 3)
    table = _table(site, model)  # with receptive fields (seconds), cached
    ctx = ReportContext(model, site, settings, good, skipped, chosen, table, quick, dataset, tuple(extensions))
    ctx.cam_layer = last_spatial_layer(model, model.preprocessing.input_size)
    ctx.guided = has_guided_rule(model)

    jobs: list[tuple[str, Callable[[], Sequence[Page]]]] = []
    jobs += [(f"image {im.name}", _one(image_page, ctx, im)) for im in good]
    jobs += [(f"layer {layer}", _one(layer_page, ctx, layer)) for layer in chosen]
    jobs += [("units", lambda: [units_page(ctx)]), ("synthesis", lambda: [synthesis_page(ctx)])]
    jobs += [(f"{ext.name}", functools.partial(b, ctx)) for ext in extensions for b in ext.pages]
    jobs += [("overview", lambda: [overview_page(ctx)])]
    pages: list[Page] = []
    with Progress("report", len(jobs) + 1, enabled=progress) as bar:
        site._status = lambda now: bar.describe(note=now[-48:])
        for label, job in jobs:
            bar.describe(label, note="")
            pages += job()
            bar.advance()
        bar.describe("writing pages", note="")
        index = [p for p in pages if p.file == "index.html"]
        rest = [p for p in pages if p.file != "index.html"]
        renderer = Renderer(site, model.name, navigation(index + rest))
        renderer.copy_assets()
        for page in rest:
            renderer.write(page)
        for page in index:  # last: until it is replaced, the previous report stays whole
            renderer.write(page)
        bar.advance(note="done")
    names = [im.name for im in good]
    return Report(root / "index.html", [p.file for p in pages], chosen, names, skipped, site.stats, left_out)
