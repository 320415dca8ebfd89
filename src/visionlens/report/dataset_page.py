"""The report's dataset views, as an Extension: a dataset page (nearest neighbours in feature
and pixel space, PCA / t-SNE / UMAP maps as pictures and as interactive hover maps, the image
mosaic) and each unit's top dataset patches on the units page.

All of it comes from ONE dataset pass (`visionlens.dataset.run_pass`) over the report's layers,
cached like every pass (so a rerun reuses it)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import plots, render
from ..dataset import PassResult, open_dataset, run_pass
from ..dataset.views import colour_classes, default_queries, embed, grid_assignment, model_view, neighbors, top_patches
from ..models import Model
from .context import ReportContext
from .core import EmbeddingMap, Extension, Figure, Page, Section
from .site import Site, model_fingerprint

MAP_POINTS = 2000  # at most this many points (and thumbnails) in each map
PATCHES = 8  # top patches per unit


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


def _thumb(site: Site, model: Model, res: PassResult, row: int) -> str:
    rel = f"figures/dataset/thumbs/{res.cache_dir.name[:12]}-{row}.png"
    path = site.root / rel
    if not path.is_file():
        img = Image.fromarray((model_view(model, res.collection.read(row)) * 255).astype(np.uint8))
        method = Image.NEAREST if max(img.size) < 64 else Image.BICUBIC
        render.save_image(path, np.asarray(img.resize((64, 64), method), np.float32) / 255.0)
    return rel


def dataset_pages(ctx: ReportContext, name: str, res: PassResult, layer: str) -> list[Page]:
    coll, model, site = res.collection, ctx.model, ctx.site
    dep = [res.cache_dir.name]
    labels, names, by = colour_classes(res, model)
    n = len(coll)
    sections: list[Section] = []

    # ---- nearest neighbours
    k = min(6, n - 1)
    rows = default_queries(coll, 6)
    if k >= 1:

        def neighbour_rows() -> np.ndarray:
            nb = neighbors(model, res, layer, k=k, queries=rows)
            return np.concatenate([nb.feature, nb.pixel], 1)

        def draw_neighbours(idx: np.ndarray) -> np.ndarray:
            def tiles(q: int, part: np.ndarray) -> list[tuple[np.ndarray, str, bool | None]]:
                out = []
                for i in part:
                    same = bool(labels[i] == labels[rows[q]]) if by == "label" else None
                    cap = coll.label_name(int(i)) or names[labels[i]]
                    out.append((model_view(model, coll.read(int(i))), cap[:14], same))
                return out

            return plots.neighbor_grid(
                None,
                [model_view(model, coll.read(r)) for r in rows],
                [f"query: {(coll.label_name(r) or names[labels[r]])[:12]}" for r in rows],
                [tiles(q, idx[q, :k]) for q in range(len(rows))],
                [tiles(q, idx[q, k:]) for q in range(len(rows))],
                f"{model.name}, {layer} (mean-pooled), cosine distance",
            )

        grid = site.figure(
            "dataset/neighbors",
            {"method": "exact k-NN, cosine", "layer": layer, "k": k, "queries": len(rows), "dataset": name},
            neighbour_rows,
            draw_neighbours,
            title="Nearest neighbours: feature space vs pixel space",
            caption=(
                f"Each query (left) beside its {k} nearest images in {layer}'s mean-pooled features, then its "
                "nearest in raw pixels (the input pooled to 16x16). Frames: green = same label, red = other. "
                "Raw array: the neighbours' row indices, feature space first."
            ),
            depends=dep,
            css="full",
        )
        sections.append(Section("Nearest neighbours", figures=[grid]))

    # ---- maps
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(n, MAP_POINTS, replace=False)) if n > MAP_POINTS else np.arange(n)
    feats = np.asarray(res.features(layer))[sub]
    sub_labels = [labels[i] for i in sub]
    figures: list[Figure] = []
    maps: list[EmbeddingMap] = []
    tsne_coords = None
    for method in ("pca", "tsne", "umap") if len(sub) >= 4 else ():
        stats = site.cached_json(
            f"dataset/map-{method}",
            {"method": method, "layer": layer, "points": len(sub)},
            lambda method=method: _embed_stats(feats, method, sub_labels if by == "label" else None),
            depends=dep,
        )
        coords = np.asarray(stats["coords"], np.float32)
        if method == "tsne":
            tsne_coords = coords
        text = f"trustworthiness {stats['trust']:.3f}"
        if stats.get("explained"):
            text += f", explained variance {stats['explained'][0]:.1%} + {stats['explained'][1]:.1%}"
        if stats.get("knn") is not None:
            text += f", 5-NN {by} accuracy in 2-D {stats['knn']:.1%}"
        title = f"{stats['params']}: {text}"
        figures.append(
            site.figure(
                f"dataset/scatter-{method}",
                {"method": stats["params"], "layer": layer, "points": len(sub), "colour": by},
                lambda coords=coords: coords,
                lambda raw, title=title: plots.scatter(None, raw, sub_labels, names, title),
                title=f"{method.upper() if method == 'pca' else 't-SNE' if method == 'tsne' else 'UMAP'} map",
                caption=f"{len(sub)} images of {name} by their {layer} features; {text}. Colour: {by}.",
                depends=dep,
            )
        )
        points = [
            {
                "x": float(c[0]),
                "y": float(c[1]),
                "label": f"{coll.paths[i]} ({names[labels[i]]})",
                "group": names[labels[i]],
                "thumb": _thumb(site, model, res, int(i)),
            }
            for c, i in zip(coords, sub, strict=True)
        ]
        maps.append(
            site.embedding_map(
                f"dataset-{method}",
                points,
                title=f"{method} of {layer} (interactive)",
                caption=f"Colour: {by}. {text}.",
                params={"method": stats["params"], "layer": layer},
            )
        )
    if figures:
        sections.append(Section("Maps of feature space", figures=figures))
        sections.append(Section("Interactive maps", maps=maps))
    if tsne_coords is not None:
        tiles = min(len(sub), 400)
        pick = np.sort(rng.choice(len(sub), tiles, replace=False)) if len(sub) > tiles else np.arange(len(sub))

        def draw_mosaic(cells: np.ndarray) -> np.ndarray:
            rws, cls = int(cells[:, 0].max()) + 1, int(np.ceil(np.sqrt(len(pick))))
            size = 96 if len(pick) <= 100 else 48  # few images: bigger tiles
            tile = lambda j: model_view(model, coll.read(int(sub[pick[j]])))  # noqa: E731
            return plots.mosaic(None, cells, rws, cls, tile, tile_size=size)

        mosaic = site.figure(
            "dataset/mosaic",
            {
                "method": "t-SNE points assigned to grid cells (linear_sum_assignment)",
                "layer": layer,
                "images": tiles,
                "tile px": 96 if tiles <= 100 else 48,
            },
            lambda: grid_assignment(tsne_coords[pick])[0],
            draw_mosaic,
            title="Mosaic of the t-SNE map",
            caption=(
                f"{tiles} images laid on a regular grid where the t-SNE map put them: the assignment of points "
                "to cells minimizing total squared distance. Raw array: each image's (row, column)."
            ),
            depends=dep,
            css="wide",
        )
        sections.append(Section("Mosaic", figures=[mosaic]))
    skipped = f" {len(res.skipped)} unreadable files were skipped." if res.skipped else ""
    intro = (
        f"{n} images of {name}, one pass through {model.name}; features of {layer} (the last spatial layer, "
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
            tiles = []
            for p in found[u]:
                img = Image.fromarray((np.clip(p.image, 0, 1) * 255).astype(np.uint8)).resize((72, 72), Image.BICUBIC)
                tiles.append(np.asarray(img, np.float32) / 255.0)
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
) -> Path:
    """A one-page site with an interactive map of `coords` (points = `rows` of the pass):
    pan, zoom, hover for the thumbnail and label; works from file://. Returns its index.html."""
    from .html import Renderer, navigation

    site = Site(folder, model_fingerprint(model.net, model.name))
    coll = res.collection
    points = [
        {
            "x": float(c[0]),
            "y": float(c[1]),
            "label": f"{coll.paths[i]} ({names[lab]})",
            "group": names[lab],
            "thumb": _thumb(site, model, res, int(i)),
        }
        for c, i, lab in zip(coords, rows, labels, strict=True)
    ]
    m = site.embedding_map("map", points, title=title, caption=caption, params={"layer": layer})
    page = Page("index.html", title, "Report", [Section("Interactive map", maps=[m])], nav_text="Map")
    renderer = Renderer(site, model.name, navigation([page]))
    renderer.copy_assets()
    renderer.write(page)
    return Path(folder) / "index.html"
