"""The report's building blocks: figures, sections, pages, extensions and the settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One picture on a page: a PNG with its raw array (.npy) beside it and a caption saying
    what it shows and how it was made. Paths are relative to the report folder."""

    png: str
    npy: str | None
    title: str
    caption: str
    params: Mapping[str, Any] = field(default_factory=dict)  # method, layer, parameters
    width: int = 0
    height: int = 0
    shape: tuple[int, ...] = ()  # of the raw array
    css: str = ""  # extra CSS classes, e.g. "pixelated" for tiny kernels or "wide"

    @property
    def anchor(self) -> str:
        return "fig-" + self.png.rsplit("/", 1)[-1].rsplit(".", 1)[0]


@dataclass(frozen=True)
class EmbeddingMap:
    """An interactive 2-D scatter (pan, zoom, hover shows a point's thumbnail and label).
    `data` is a .js file that assigns the points to `window.VL_MAPS[id]` (works from file://)."""

    id: str
    data: str
    title: str
    caption: str
    params: Mapping[str, Any] = field(default_factory=dict)
    npy: str | None = None  # the (N, 2) coordinates


@dataclass(frozen=True)
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]  # cells are text (escaped) or Link
    highlight: Sequence[int] = ()  # row indices to emphasize


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass
class Slot:
    """A named place inside a section that an extension fills, e.g. a unit's top dataset
    patches. `figures` stay empty (and `empty` is shown) until an extension fills them."""

    name: str
    title: str
    empty: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Card:
    """Things shown together in one box: e.g. a unit's feature visualization beside the slot
    for its top dataset patches, or an image's thumbnail with its predictions."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # short text lines (escaped)
    href: str = ""  # the title links here
    id: str = ""
    brief: bool = False  # figures show their title, parameters and raw link only (thumbnails)


@dataclass
class Section:
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    table: Table | None = None
    maps: list[EmbeddingMap] = field(default_factory=list)
    id: str = ""
    compact: bool = False  # smaller tiles (many figures)
    collapsed: bool = False  # folded away behind its title (long tables)


@dataclass
class Page:
    """One HTML page. `file` is a flat name such as "layer-blocks.3.html"; `group` is its
    heading in the navigation. `scripts` are extra local .js files the page loads (embedding
    maps add their viewer and data files automatically)."""

    file: str
    title: str
    group: str
    sections: list[Section] = field(default_factory=list)
    intro: str = ""
    scripts: list[str] = field(default_factory=list)
    nav_text: str = ""  # shorter link text in the navigation (default: title)


@dataclass(frozen=True)
class Settings:
    """How much work each technique does. `Settings.quick()` is what `--quick` uses."""

    units: int = 8  # feature visualizations of the first N units of each layer
    vis_steps: int = 256
    vis_size: int = 128
    channels: int = 16  # activation maps shown per layer (the most active)
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    occlusion_window: int = 16
    occlusion_stride: int = 8
    dream_octaves: int = 3
    dream_steps: int = 10
    invert_size: int = 128
    invert_steps: int = 100
    textures: tuple[str, ...] = ("brick", "gravel")
    texture_size: int = 192
    texture_steps: int = 300
    styles: tuple[tuple[str, str], ...] = (("chelsea", "coffee"),)  # (content, style)
    style_size: int = 224
    style_steps: int = 200
    seed: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> Settings:
        fast = cls(
            units=6,
            vis_steps=96,
            vis_size=96,
            smoothgrad_samples=8,
            occlusion_window=32,
            occlusion_stride=16,
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
