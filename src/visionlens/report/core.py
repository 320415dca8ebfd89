"""The report's building blocks: figures, sections, pages, extensions and the settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One picture on a page: a PNG with its raw array (.npy) beside it and a caption saying
    what it shows and how it was made. Paths are relative to the report folder; make figures
    with `Site.figure`, which writes the files and fills in the sizes.

    Attributes:
        png: the picture's path, e.g. "figures/layer/blocks.3-filters.png".
        npy: the raw array's path, or None.
        title: a short title.
        caption: what it shows and how it was made.
        params: method, layer and parameters, shown under the caption.
        width: the PNG's width in px.
        height: the PNG's height in px.
        shape: the raw array's shape.
        css: extra CSS classes, e.g. "pixelated" for tiny kernels or "wide".

    Example:
        >>> from visionlens.report import Figure
        >>> fig = Figure("figures/cat/gradcam.png", "figures/cat/gradcam.npy", "Grad-CAM", "Where the class is.")
        >>> fig.anchor
        'fig-gradcam'
    """

    png: str
    npy: str | None
    title: str
    caption: str
    params: Mapping[str, Any] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    shape: tuple[int, ...] = ()
    css: str = ""

    @property
    def anchor(self) -> str:
        """The HTML id of the figure on its page: "fig-" and the PNG's file stem."""
        return "fig-" + self.png.rsplit("/", 1)[-1].rsplit(".", 1)[0]


@dataclass(frozen=True)
class EmbeddingMap:
    """An interactive 2-D scatter (pan, zoom, hover shows a point's thumbnail and label).
    `data` is a .js file that assigns the points to `window.VL_MAPS[id]` (works from file://).
    Make one with `Site.embedding_map` and put it in a `Section`'s `maps`.

    Attributes:
        id: a flat name, unique in the report.
        data: the .js data file's path, relative to the report folder.
        title: a short title.
        caption: what it shows and how it was made.
        params: method and parameters, shown under the caption.
        npy: the path of the (N, 2) float32 coordinates, or None.

    Example:
        >>> from visionlens.report import Site
        >>> site = Site("report", "my-model")
        >>> m = site.embedding_map("tsne", [{"x": 0.1, "y": 0.2, "label": "cat"}], title="t-SNE", caption="...")
        >>> m.data, m.npy
        ('data/tsne.js', 'data/tsne.npy')
    """

    id: str
    data: str
    title: str
    caption: str
    params: Mapping[str, Any] = field(default_factory=dict)
    npy: str | None = None


@dataclass(frozen=True)
class Table:
    """A table in a `Section`.

    Attributes:
        columns: the column headings.
        rows: the rows; each cell is text (escaped) or a `Link`.
        highlight: indices of rows to emphasize.

    Example:
        >>> from visionlens.report import Link, Section, Table
        >>> table = Table(["layer", "shape"], [[Link("blocks.3", "layer-blocks.3.html"), "80x14x14"]])
        >>> Section("Layers", table=table).table.columns
        ['layer', 'shape']
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    highlight: Sequence[int] = ()


@dataclass(frozen=True)
class Link:
    """A link in a table cell or the navigation.

    Attributes:
        text: the link text (escaped).
        href: the target, relative to the report folder (percent-encoded when written).

    Example:
        >>> from visionlens.report import Link
        >>> Link("blocks.3", "layer-blocks.3.html").href
        'layer-blocks.3.html'
    """

    text: str
    href: str


@dataclass
class Slot:
    """A named place inside a section that an extension fills, e.g. a unit's top dataset
    patches. `figures` stay empty (and `empty` is shown) until an extension fills them.

    Attributes:
        name: what fills it, e.g. `UNIT_PATCHES_SLOT`.
        title: its heading.
        empty: the text shown while it holds no figures.
        figures: the figures an extension put in it.

    Example:
        >>> from visionlens.report import UNIT_PATCHES_SLOT, Slot
        >>> slot = Slot(UNIT_PATCHES_SLOT, "Top dataset patches", "No dataset pass was run.")
        >>> slot.figures
        []
    """

    name: str
    title: str
    empty: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Card:
    """Things shown together in one box: e.g. a unit's feature visualization beside the slot
    for its top dataset patches, or an image's thumbnail with its predictions.

    Attributes:
        title: the box's heading.
        figures: its figures.
        slots: places extensions fill.
        lines: short text lines (escaped).
        href: where the title links to ("" for none).
        id: its HTML id ("" for none).
        brief: figures show their title, parameters and raw link only (thumbnails).

    Example:
        >>> from visionlens.report import Card
        >>> Card("chelsea", lines=["tiger cat 0.62"], href="image-chelsea.html").lines
        ['tiger cat 0.62']
    """

    title: str
    figures: list[Figure] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    href: str = ""
    id: str = ""
    brief: bool = False


@dataclass
class Section:
    """A titled part of a `Page`: figures, cards, a table and embedding maps, in that order.

    Attributes:
        title: its heading.
        intro: a paragraph under the heading (escaped).
        figures: its figures.
        cards: its cards.
        table: a table, or None.
        maps: interactive embedding maps (the page loads their viewer by itself).
        id: its HTML id ("" for one made from the title).
        compact: smaller tiles (many figures).
        collapsed: folded away behind its title (long tables).

    Example:
        >>> from visionlens.report import Page, Section
        >>> page = Page("notes.html", "Notes", "Report", [Section("Method", intro="How it was made.")])
        >>> page.sections[0].title
        'Method'
    """

    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    table: Table | None = None
    maps: list[EmbeddingMap] = field(default_factory=list)
    id: str = ""
    compact: bool = False
    collapsed: bool = False


@dataclass
class Page:
    """One HTML page; page builders of an `Extension` return them.

    Attributes:
        file: a flat file name such as "layer-blocks.3.html".
        title: the page's heading.
        group: its heading in the navigation ("Report", "Dataset", "Images", "Layers", ...).
        sections: its sections, in order.
        intro: a paragraph under the title (escaped).
        scripts: extra local .js files the page loads (embedding maps add their viewer and
            data files automatically).
        nav_text: shorter link text in the navigation (default: the title).

    Example:
        >>> from visionlens.report import Page, Section
        >>> Page("dataset.html", "Dataset", "Dataset", [Section("Neighbours")], nav_text="Data").file
        'dataset.html'
    """

    file: str
    title: str
    group: str
    sections: list[Section] = field(default_factory=list)
    intro: str = ""
    scripts: list[str] = field(default_factory=list)
    nav_text: str = ""


@dataclass(frozen=True)
class Settings:
    """How much work each technique does. `Settings.quick()` is what `--quick` uses.

    Attributes:
        units: feature visualizations of the first N units of each layer.
        vis_steps: optimization steps per feature visualization.
        vis_size: feature visualization side, in px.
        channels: activation maps shown per layer (the most active).
        smoothgrad_samples: noisy copies per SmoothGrad map.
        smoothgrad_noise: SmoothGrad's noise, as a fraction of the image's value range.
        occlusion_window: occlusion window side, in px.
        occlusion_stride: occlusion stride, in px.
        metric_steps: points on each deletion and insertion curve under the maps.
        sanity_groups: layer groups re-initialized, one more at a time, by the sanity check.
        dream_octaves: DeepDream octaves.
        dream_steps: DeepDream steps per octave.
        invert_size: inversion side, in px.
        invert_steps: inversion steps.
        textures: bundled images whose texture is synthesized.
        texture_size: texture side, in px.
        texture_steps: texture synthesis steps.
        styles: (content, style) image pairs for style transfer.
        style_size: style transfer side, in px.
        style_steps: style transfer steps.
        seed: the seed of every random start.

    Example:
        >>> from visionlens.report import Settings
        >>> Settings.quick(units=2).units, Settings().units
        (2, 8)
    """

    units: int = 8
    vis_steps: int = 256
    vis_size: int = 128
    channels: int = 16
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    occlusion_window: int = 16
    occlusion_stride: int = 8
    metric_steps: int = 50
    sanity_groups: int = 8
    dream_octaves: int = 3
    dream_steps: int = 10
    invert_size: int = 128
    invert_steps: int = 100
    textures: tuple[str, ...] = ("brick", "gravel")
    texture_size: int = 192
    texture_steps: int = 300
    styles: tuple[tuple[str, str], ...] = (("chelsea", "coffee"),)
    style_size: int = 224
    style_steps: int = 200
    seed: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> Settings:
        """The lighter settings of `--quick` (about two minutes on 2 CPU cores), with any
        field changed by keyword."""
        fast = cls(
            units=6,
            vis_steps=96,
            vis_size=96,
            smoothgrad_samples=8,
            occlusion_window=32,
            occlusion_stride=16,
            metric_steps=10,
            sanity_groups=4,
            dream_steps=6,
            invert_steps=40,
            invert_size=112,
            textures=("brick",),
            texture_size=192,
            texture_steps=300,
            style_size=192,
            style_steps=120,
        )
        return replace(fast, **changes)
