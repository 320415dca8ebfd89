"""What every page builder gets: the model, the readable images, the layers, the settings
and the site to write figures into."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ImageError, VisionlensError
from ..io import fingerprint
from ..layers import LayerInfo
from ..models import Model
from .core import Figure, Page, Section, Settings
from .site import Site, slugify

DEFAULT_IMAGES = ("chelsea", "coffee", "rocket", "motorcycle", "flower", "grace_hopper")
"""The bundled photographs a report shows when given no images.

Example:
    >>> from visionlens.report import DEFAULT_IMAGES
    >>> DEFAULT_IMAGES[:2]
    ('chelsea', 'coffee')
"""
QUICK_IMAGES = DEFAULT_IMAGES[:3]
"""The bundled photographs of a `quick=True` report given no images.

Example:
    >>> from visionlens.report import QUICK_IMAGES
    >>> QUICK_IMAGES
    ('chelsea', 'coffee', 'rocket')
"""


@dataclass
class ReportImage:
    """One readable image of a report, prepared for the model and classified.

    Attributes:
        name: as the user gave it (file name or sample name): display text, never a path.
        source: what `load_image` reads.
        slug: a version of the name safe for file names and URLs.
        x: model input as `model.prepare` makes it, (1, 3, H, W), on the model's device.
        key: the fingerprint of `x`, for figure keys.
        top: its top-5 classes as (class index, label, probability).

    Example:
        >>> from visionlens.report.context import load_images
        >>> images, skipped = load_images(vl.load_model(), ["chelsea", "nope.jpg"])
        >>> images[0].page, images[0].top[0][1], skipped[0][0]
        ('image-chelsea.html', 'tiger cat', 'nope.jpg')
    """

    name: str
    source: str
    slug: str
    x: torch.Tensor
    key: str
    top: list[tuple[int, str, float]] = field(default_factory=list)

    @property
    def page(self) -> str:
        """The file name of the image's page."""
        return f"image-{self.slug}.html"


@dataclass
class ReportContext:
    """What every page builder gets (`build_report` makes it): the model, the images, the
    layers, the settings and the site to write figures into.

    Attributes:
        model: the model the report is about.
        site: the output folder; make figures with `ctx.site.figure(...)`.
        settings: how much work each technique does.
        images: the readable images, prepared and classified.
        skipped: (name, why) of the images that could not be read.
        layers: the layers that get a page.
        layer_table: every layer's type, output shape and receptive field.
        quick: whether the report runs with `quick=True`.
        dataset: the dataset name given to `build_report` (`--dataset`), for extensions.
        extensions: the report's extensions.
        cam_layer: Grad-CAM's layer: the last spatial one.
        guided: whether guided backprop has a ReLU to act on (not on GELU networks).
        unit_figures: (layer, unit) -> its feature visualization, filled by the layer pages.

    Example:
        >>> from visionlens.report import Extension, Page, ReportContext, Section
        >>> def notes(ctx: ReportContext) -> list[Page]:
        ...     text = f"{len(ctx.images)} images, layers {', '.join(ctx.layers)}"
        ...     return [Page("notes.html", "Notes", "Report", [Section("Run", intro=text)])]
        >>> ext = Extension("notes", pages=[notes])
        >>> small = vl.report.Settings.quick(units=2, vis_steps=8, vis_size=64, dream_octaves=1, dream_steps=2,
        ...                                  invert_steps=4, textures=(), styles=())
        >>> report = vl.build_report(images=["chelsea"], layers=["blocks.2"], extensions=[ext], settings=small)
        >>> report.pages[-2:]
        ['notes.html', 'index.html']
    """

    model: Model
    site: Site
    settings: Settings
    images: list[ReportImage]
    skipped: list[tuple[str, str]]
    layers: list[str]
    layer_table: list[LayerInfo]
    quick: bool = False
    dataset: str | None = None
    extensions: Sequence[Extension] = ()
    cam_layer: str = ""
    guided: bool = True
    unit_figures: dict[tuple[str, int], Figure] = field(default_factory=dict)

    @property
    def model_key(self) -> str:
        """The model's fingerprint, part of every figure's key."""
        return self.site.model_key

    def shape(self, layer: str) -> tuple[int, ...]:
        """Output shape of `layer` without the batch dimension, from the layer table; (C, H, W)
        for maps of every layout (channels-last maps and token grids too)."""
        for info in self.layer_table:
            if info.name == layer and info.map_shape is not None:
                return info.map_shape
        return ()

    @staticmethod
    def layer_page(layer: str) -> str:
        """The file name of `layer`'s page."""
        return f"layer-{slugify(layer)}.html"


def expand_images(specs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files, bundled sample names and folders (their files, sorted; hidden files skipped)."""
    out: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if not f.name.startswith(".") and (f.is_file() or f.is_symlink()))
            if not files:
                raise ImageError(f"{p}: the folder holds no files; give a folder of images")
            out += [str(f) for f in files]
        else:
            out.append(str(spec))
    return list(dict.fromkeys(out))


def load_images(model: Model, sources: Sequence[str], k: int = 5) -> tuple[list[ReportImage], list[tuple[str, str]]]:
    """Prepare every readable image; collect (name, reason) for the others."""
    images: list[ReportImage] = []
    skipped: list[tuple[str, str]] = []
    taken: set[str] = set()
    for src in sources:
        name = Path(src).name if os.sep in src or Path(src).exists() else src
        try:
            x = model.prepare(src)
        except ImageError as e:
            reason = str(e)
            skipped.append((name, reason.split(": ", 1)[1] if reason.startswith(f"{src}: ") else reason))
            continue
        stem = Path(name).stem if Path(src).exists() else name
        images.append(ReportImage(name, src, slugify(stem, taken, key=str(Path(src).resolve())), x, ""))
    if not images:
        why = "; ".join(f"{n}: {r}" for n, r in skipped[:3])
        raise VisionlensError(f"none of the images could be read ({why}); give readable image files")
    for start in range(0, len(images), 16):
        chunk = images[start : start + 16]
        probs = model.logits(torch.cat([im.x for im in chunk])).softmax(-1)
        top = probs.topk(min(k, probs.shape[-1]), dim=-1)
        for i, im in enumerate(chunk):
            im.key = fingerprint(im.x)
            pairs = zip(top.values[i].tolist(), top.indices[i].tolist(), strict=True)
            im.top = [(int(c), model.label(int(c)), float(p)) for p, c in pairs]
    return images, skipped


PageBuilder = Callable[[ReportContext], Sequence[Page]]
SectionBuilder = Callable[[ReportContext], Sequence[Section]]
UnitPatches = Callable[[ReportContext, str, Sequence[int]], Mapping[int, Sequence[Figure]]]


@dataclass(frozen=True)
class Extension:
    """What a technique package adds to the report (see the package docstring).

    Attributes:
        name: what the extension is, shown in the progress display.
        pages: builders (ctx) -> [Page] of extra pages (e.g. the dataset page), run after the
            core pages.
        overview: builders (ctx) -> [Section] of extra sections at the end of index.html.
        unit_patches: fills each unit's "top dataset patches" slot on the units page:
            (ctx, layer, units) -> {unit: [Figure]}.

    Example:
        >>> from visionlens.report import Extension, ReportContext, Section
        >>> def summary(ctx: ReportContext) -> list[Section]:
        ...     return [Section("Images", intro=", ".join(im.name for im in ctx.images))]
        >>> ext = Extension("summary", overview=[summary])
        >>> small = vl.report.Settings.quick(units=2, vis_steps=8, vis_size=64, dream_octaves=1, dream_steps=2,
        ...                                  invert_steps=4, textures=(), styles=())
        >>> report = vl.build_report(images=["chelsea"], layers=["blocks.2"], extensions=[ext], settings=small)
        >>> report.index.name
        'index.html'
    """

    name: str
    pages: Sequence[PageBuilder] = ()
    overview: Sequence[SectionBuilder] = ()
    unit_patches: UnitPatches | None = None
