"""The report's dataset views, as an Extension: a dataset page (nearest neighbours in feature
and pixel space, PCA / t-SNE / UMAP maps as pictures and as interactive hover maps, the image
mosaic) and each unit's top dataset patches on the units page.

All of it comes from ONE dataset pass (`visionlens.dataset.run_pass`) over the report's layers,
cached like every pass (so a rerun reuses it)."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import plots, render
from ..dataset import PassResult, open_dataset, run_pass
from ..dataset.views import colour_classes, default_queries, embed, grid_assignment, model_view, neighbors, top_patches
from ..io import fingerprint, model_fingerprint
from ..models import Model
from .context import Extension, ReportContext
from .core import EmbeddingMap, Figure, Page, Section
from .mapdata import MapData, Thumbs
from .site import Site, slugify

MAP_POINTS = 2000  # at most this many points (and thumbnails) in each map
PATCHES = 8  # top patches per unit
THUMB = 64  # px: the maps' thumbnails, in sprite sheets of 1,024


def extension(name: str) -> Extension:
    """The dataset Extension for a dataset spec (samples, digits, a folder, a .txt list)."""
    open_dataset(name)  # a bad dataset fails before any work
    made: list[Any] = [None, None]  # [the context, its pass]: the units page and the dataset page share it

    def dataset_pass(ctx: ReportContext) -> tuple[PassResult, str]:
        if made[0] is not ctx:
            made[:] = [ctx, _pass(ctx, name)]
        return made[1]

    def pages(ctx: ReportContext) -> list[Page]:
        return dataset_pages(ctx, name, *dataset_pass(ctx))

    def patches(ctx: ReportContext, layer: str, units: Sequence[int]) -> dict[int, list[Figure]]:
        if len(ctx.shape(layer)) != 3:
            return {}
        return unit_patches(ctx, name, dataset_pass(ctx)[0], layer, units)

    return Extension("dataset", pages=[pages], unit_patches=patches)


def _pass(ctx: ReportContext, name: str) -> tuple[PassResult, str]:
    """ONE dataset pass over the feature layer (the last spatial one) and every spatial report
    layer."""
    feature_layer = ctx.cam_layer
    layers = [feature_layer, *(n for n in ctx.layers if len(ctx.shape(n)) == 3 and n != feature_layer)]
    ctx.site.status(f"dataset pass over {name}")
    return run_pass(ctx.model, name, layers, topk=16, predict=True), feature_layer


def _map_data(
    res: PassResult, coords: np.ndarray, rows: Sequence[int] | np.ndarray, labels: Sequence[int], names: Sequence[str]
) -> MapData:
    """The points of an interactive map: position, label ("path (class)") and colour group
    (`labels[j]` indexes `names` and belongs to `rows[j]`)."""
    coll = res.collection
    return MapData(
        np.asarray(coords, np.float32),
        labels=[f"{coll.paths[i]} ({names[labels[j]]})" for j, i in enumerate(rows)],
        groups=np.asarray(labels, np.int64),
        group_names=list(names),
    )


def _thumbs(model: Model, res: PassResult, rows: Sequence[int] | np.ndarray) -> Thumbs:
    """rows of the map -> their images as the model sees them, THUMB px."""
    coll = res.collection

    def make(js: np.ndarray) -> np.ndarray:
        return np.stack([render.thumbnail(model_view(model, coll.read(int(rows[j]))), THUMB) for j in js])

    return make


def _thumbs_stem(res: PassResult, rows: Sequence[int] | np.ndarray) -> str:
    """Sprite sheets are named after the pass and the rows: maps of the same rows share them."""
    return f"dataset/thumbs/{res.cache_dir.name[:12]}-{fingerprint([int(r) for r in rows])[:10]}"


@dataclass
class _View:
    """What every section of the dataset page draws from: one pass, one feature layer."""

    ctx: ReportContext
    name: str
    res: PassResult
    layer: str

    def __post_init__(self) -> None:
        self.model, self.site, self.coll = self.ctx.model, self.ctx.site, self.res.collection
        self.labels, self.names, self.by = colour_classes(self.res, self.model)
        self.dep = [self.res.cache_dir.name]

    def image(self, row: int) -> np.ndarray:
        return model_view(self.model, self.coll.read(int(row)))

    def caption(self, row: int) -> str:
        return self.coll.label_name(int(row)) or self.names[self.labels[row]]

    def neighbours(self) -> Section | None:
        k, rows = min(6, len(self.coll) - 1), default_queries(self.coll, 6)
        if k < 1:
            return None

        def tiles(q: int, part: np.ndarray) -> list[tuple[np.ndarray, str, bool | None]]:
            same = lambda i: bool(self.labels[i] == self.labels[rows[q]]) if self.by == "label" else None  # noqa: E731
            return [(self.image(i), self.caption(i)[:14], same(i)) for i in part]

        def compute() -> np.ndarray:
            nb = neighbors(self.model, self.res, self.layer, k=k, queries=rows)
            return np.concatenate([nb.feature, nb.pixel], 1)

        def draw(idx: np.ndarray) -> np.ndarray:
            return plots.neighbor_grid(
                None,
                [self.image(r) for r in rows],
                [f"query: {self.caption(r)[:12]}" for r in rows],
                [tiles(q, idx[q, :k]) for q in range(len(rows))],
                [tiles(q, idx[q, k:]) for q in range(len(rows))],
                f"{self.model.name}, {self.layer} (mean-pooled), cosine distance",
            )

        grid = self.site.figure(
            "dataset/neighbors",
            {"method": "exact k-NN, cosine", "layer": self.layer, "k": k, "queries": len(rows), "dataset": self.name},
            compute,
            draw,
            title="Nearest neighbours: feature space vs pixel space",
            caption=(
                f"Each query (left) beside its {k} nearest images in {self.layer}'s mean-pooled features, then its "
                "nearest in raw pixels (the input pooled to 16x16). Frames: green = same label, red = other. "
                "Raw array: the neighbours' row indices, feature space first."
            ),
            depends=self.dep,
            css="full",
        )
        return Section("Nearest neighbours", figures=[grid])

    def maps(self, sub: np.ndarray) -> tuple[list[Section], np.ndarray | None]:
        """Scatter pictures and interactive maps of the rows `sub` by PCA, t-SNE and UMAP;
        also returns the t-SNE coordinates (for the mosaic)."""
        feats = np.asarray(self.res.features(self.layer))[sub]
        sub_labels = [self.labels[i] for i in sub]
        figures: list[Figure] = []
        maps: list[EmbeddingMap] = []
        tsne = None
        for method in ("pca", "tsne", "umap") if len(sub) >= 4 else ():
            stats = self.site.cached_json(
                f"dataset/map-{method}",
                {"method": method, "layer": self.layer, "points": len(sub)},
                functools.partial(_embed_stats, feats, method, sub_labels if self.by == "label" else None),
                depends=self.dep,
            )
            coords = np.asarray(stats["coords"], np.float32)
            tsne = coords if method == "tsne" else tsne
            text = _map_stats(stats, self.by)
            title = f"{stats['params']}: {text}"
            figures.append(
                self.site.figure(
                    f"dataset/scatter-{method}",
                    {"method": stats["params"], "layer": self.layer, "points": len(sub), "colour": self.by},
                    functools.partial(np.asarray, coords),
                    functools.partial(_scatter, sub_labels, self.names, title),
                    title=f"{_METHOD_NAMES[method]} map",
                    caption=f"{len(sub)} images of {self.name} by their {self.layer} features; {text}. "
                    f"Colour: {self.by}.",
                    depends=self.dep,
                )
            )
            maps.append(
                self.site.embedding_map(
                    f"dataset-{method}",
                    data=_map_data(self.res, coords, sub, sub_labels, self.names),
                    title=f"{method} of {self.layer} (interactive)",
                    caption=f"Colour: {self.by}. {text}.",
                    params={"method": stats["params"], "layer": self.layer},
                    thumbs=_thumbs(self.model, self.res, sub),
                    thumb_px=THUMB,
                    thumbs_stem=_thumbs_stem(self.res, sub),
                )
            )
        if not figures:
            return [], None
        return [Section("Maps of feature space", figures=figures), Section("Interactive maps", maps=maps)], tsne

    def mosaic(self, sub: np.ndarray, tsne: np.ndarray, rng: np.random.Generator) -> Section:
        tiles = min(len(sub), 400)
        pick = np.sort(rng.choice(len(sub), tiles, replace=False)) if len(sub) > tiles else np.arange(len(sub))
        size = 96 if tiles <= 100 else 48  # few images: bigger tiles

        def draw(cells: np.ndarray) -> np.ndarray:
            rws, cls = int(cells[:, 0].max()) + 1, int(np.ceil(np.sqrt(len(pick))))
            return plots.mosaic(None, cells, rws, cls, lambda j: self.image(sub[pick[j]]), tile_size=size)

        mosaic = self.site.figure(
            "dataset/mosaic",
            {
                "method": "t-SNE points assigned to grid cells (linear_sum_assignment)",
                "layer": self.layer,
                "images": tiles,
                "tile px": size,
            },
            lambda: grid_assignment(tsne[pick])[0],
            draw,
            title="Mosaic of the t-SNE map",
            caption=(
                f"{tiles} images laid on a regular grid where the t-SNE map put them: the assignment of points "
                "to cells minimizing total squared distance. Raw array: each image's (row, column)."
            ),
            depends=self.dep,
            css="wide",
        )
        return Section("Mosaic", figures=[mosaic])


_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _scatter(labels: Sequence[int], names: Sequence[str], title: str, coords: np.ndarray) -> np.ndarray:
    return plots.scatter(None, coords, labels, names, title)


def _map_stats(stats: dict[str, Any], by: str) -> str:
    text = f"trustworthiness {stats['trust']:.3f}"
    if stats.get("explained"):
        text += f", explained variance {stats['explained'][0]:.1%} + {stats['explained'][1]:.1%}"
    if stats.get("knn") is not None:
        text += f", 5-NN {by} accuracy in 2-D {stats['knn']:.1%}"
    return text


def dataset_pages(ctx: ReportContext, name: str, res: PassResult, layer: str) -> list[Page]:
    """The dataset page: neighbours, maps of feature space (pictures and interactive), mosaic."""
    view = _View(ctx, name, res, layer)
    n = len(res.collection)
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(n, MAP_POINTS, replace=False)) if n > MAP_POINTS else np.arange(n)
    sections = [s for s in [view.neighbours()] if s is not None]
    maps, tsne = view.maps(sub)
    sections += maps
    if tsne is not None:
        sections.append(view.mosaic(sub, tsne, rng))
    skipped = f" {len(res.skipped)} unreadable files were skipped." if res.skipped else ""
    intro = (
        f"{n} images of {name}, one pass through {ctx.model.name}; features of {layer} (the last spatial layer, "
        f"mean-pooled: what the classifier reads).{skipped}"
    )
    return [Page("dataset.html", f"Dataset: {name}", "Dataset", sections, intro=intro, nav_text="Dataset")]


def _embed_stats(feats: np.ndarray, method: str, labels: list[int] | None) -> dict[str, Any]:
    emb = embed(feats, method, labels)
    return {
        "coords": emb.coords.tolist(),
        "trust": emb.trustworthiness,
        "explained": emb.explained,
        "knn": emb.knn_accuracy,
        "params": emb.params,
    }


def unit_patches(
    ctx: ReportContext, name: str, res: PassResult, layer: str, units: Sequence[int]
) -> dict[int, list[Figure]]:
    """Each unit's top dataset patches as one figure (a strip of thumbnails), for the units
    page; empty when the pass did not capture `layer`."""
    if layer not in res.layers:
        return {}
    k = min(PATCHES, len(res.collection))
    found: dict[int, list[Any]] | None = None
    out: dict[int, list[Figure]] = {}
    for u in units:

        def strip(u: int = u) -> np.ndarray:
            nonlocal found
            if found is None:
                found = top_patches(ctx.model, res, layer, units, k)
            tiles = [render.thumbnail(p.image, 72) for p in found[u]]
            return render.grid(tiles, cols=min(4, len(tiles)))

        top = res.top(layer)
        values = ", ".join(f"{v:.2f}" for v in top.values[u, :k] if np.isfinite(v))
        out[u] = [
            ctx.site.figure(
                f"dataset/patches-{layer}-{u}",
                {"method": "top dataset patches", "layer": layer, "unit": u, "k": k, "dataset": name, "per row": 4},
                strip,
                title=f"Top {k} dataset patches",
                caption=(
                    f"The {k} images of {name} where unit {u} of {layer} is strongest, cropped to the receptive "
                    f"field of that position (grey: beyond the image). Maxima: {values}."
                ),
                depends=[res.cache_dir.name],
            )
        ]
    return out


def write_map_site(
    folder: str | os.PathLike[str],
    model: Model,
    res: PassResult,
    layer: str,
    coords: np.ndarray,
    rows: Sequence[int],
    labels: Sequence[int],
    names: Sequence[str],
    title: str,
    caption: str,
    page_name: str = "index.html",
) -> Path:
    """A one-page site with an interactive map of `coords` (points = `rows` of the pass):
    pan, zoom, hover for the thumbnail and label; works from file://. The page is `page_name`
    in `folder` (its map data is named after it, so pages can share a folder); returns its path."""
    from .html import Renderer, navigation

    site = Site(folder, model_fingerprint(model.net, model.name))
    map_id = "map" if page_name == "index.html" else slugify(Path(page_name).stem)
    m = site.embedding_map(
        map_id, data=_map_data(res, coords, rows, labels, names), title=title, caption=caption,
        params={"layer": layer}, thumbs=_thumbs(model, res, rows), thumb_px=THUMB, thumbs_stem=_thumbs_stem(res, rows),
    )  # fmt: skip
    page = Page(page_name, title, "Report", [Section("Interactive map", maps=[m])], nav_text="Map")
    renderer = Renderer(site, model.name, navigation([page]))
    renderer.copy_assets()
    renderer.write(page)
    return Path(folder) / page_name
