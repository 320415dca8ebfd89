"""`visionlens` commands on image collections: neighbors, embed, top-patches (they share the
CLI's app). Each runs the dataset pass (cached) and draws a view of what it stored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import DeviceOpt, ModelOpt, TrustOpt, WeightsOpt, _load, app, out
from .errors import ArgumentError

DatasetArg = Annotated[
    str, typer.Argument(help="folder of images (subfolders = labels), .txt list of paths, or samples / digits")
]
LayerOpt = Annotated[
    str | None, typer.Option("--layer", "-l", help="layer (default: the last spatial layer, before the classifier)")
]
PoolOpt = Annotated[str, typer.Option("--pool", help="spatial pooling of features: mean or max")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="images per batch")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=0, help="image-reading processes (default: auto)")]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="feature cache folder (default: $VISIONLENS_CACHE or ~/.cache/visionlens)"),
]
OutPng = Annotated[Path | None, typer.Option("--output", "-o", help="PNG to write")]


def _png(output: Path | None, default: str) -> Path:
    path = output or Path(default)
    if path.suffix.lower() != ".png":
        raise ArgumentError(f"{path}: the output must be a .png file")
    if path.is_dir():
        raise ArgumentError(f"{path}: is a directory; give an output file name")
    return path


def _prepare(dataset, model, weights, trust, device, layer, pool, batch_size, workers, cache, topk=16, predict=False):  # type: ignore[no-untyped-def]
    from .dataset import open_dataset, run_pass
    from .layers import last_spatial_layer

    coll = open_dataset(dataset)  # before the model: a bad dataset fails fast
    m = _load(model, weights, trust, device)
    layer = layer or last_spatial_layer(m, m.preprocessing.input_size)
    res = run_pass(
        m, coll, [layer], pool=pool, topk=topk, batch_size=batch_size, workers=workers, cache_dir=cache,
        predict=predict, progress=True,
    )  # fmt: skip
    if res.skipped:
        out.print(f"skipped {len(res.skipped)} unreadable image(s):")
        for _, why in res.skipped[:10]:
            out.print(f"  {why}")
        if len(res.skipped) > 10:
            out.print(f"  ... and {len(res.skipped) - 10} more")
    if coll.duplicates:
        out.print(f"ignored {coll.duplicates} repeated path(s)")
    return m, res, layer


def _stem(dataset: str) -> str:
    return Path(dataset.rstrip("/")).stem or "dataset"


@app.command()
def neighbors(
    dataset: DatasetArg,
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="query image (repeatable)")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="neighbours per query")] = 8,
    queries: Annotated[int, typer.Option("--queries", min=1, help="dataset queries when no --query")] = 6,
    layer: LayerOpt = None,
    pool: PoolOpt = "mean",
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
    output: OutPng = None,
) -> None:
    """Each query beside its k nearest neighbours in feature space and in pixel space."""
    from . import plots
    from .dataset.views import default_queries, label_agreement, model_view
    from .dataset.views import neighbors as find

    path = _png(output, f"neighbors-{_stem(dataset)}.png")
    m, res, layer = _prepare(dataset, model, weights, trust_checkpoint, device, layer, pool, batch_size, workers, cache)
    coll = res.collection
    rows = None if query else default_queries(coll, queries)
    nb = find(m, res, layer, k, rows, query or (), cache)

    def tiles(idx, dist, q):  # type: ignore[no-untyped-def]
        ql = nb.query_labels[q]
        out_ = []
        for i, d in zip(idx, dist, strict=True):
            lab = coll.labels[i] if coll.labels is not None else -1
            same = None if ql < 0 or lab < 0 else bool(lab == ql)
            cap = (
                f"{coll.label_name(i)} {d:.2f}".strip()
                if coll.labels is not None
                else f"{Path(coll.paths[i]).stem[:10]} {d:.2f}"
            )
            out_.append((model_view(m, coll.read(int(i))), cap, same))
        return out_

    qimgs = [model_view(m, img) for img in nb.query_images]
    qtitles = [
        f"query: {coll.classes[lab]}" if lab >= 0 and coll.classes else Path(name).stem[:14]
        for name, lab in zip(nb.query_names, nb.query_labels, strict=True)
    ]
    side = int(round((res.pixels().shape[1] / 3) ** 0.5))
    title = f"{m.name}, layer {layer} ({res.pool}-pooled), cosine distance; pixels: input pooled to {side}x{side}"
    if coll.labels is not None and min(nb.query_labels) >= 0:
        f_agree, p_agree = label_agreement(nb)
        title += f"; same label: features {f_agree:.0%}, pixels {p_agree:.0%}"
    plots.neighbor_grid(
        path,
        qimgs,
        qtitles,
        [tiles(nb.feature[q], nb.feature_dist[q], q) for q in range(len(qimgs))],
        [tiles(nb.pixel[q], nb.pixel_dist[q], q) for q in range(len(qimgs))],
        title,
    )
    out.print(f"wrote {path}")


@app.command()
def embed(
    dataset: DatasetArg,
    method: Annotated[str, typer.Option("--method", help="pca, tsne or umap")] = "tsne",
    mosaic: Annotated[bool, typer.Option("--mosaic", help="also lay the images on a grid (PNG beside)")] = False,
    html: Annotated[bool, typer.Option("--html", help="also write an interactive page (pan, zoom, hover)")] = False,
    max_points: Annotated[int, typer.Option("--max-points", min=4, help="embed a random subset this large")] = 20000,
    tiles: Annotated[int, typer.Option("--tiles", min=4, help="images in the mosaic at most")] = 1024,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    layer: LayerOpt = None,
    pool: PoolOpt = "mean",
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
    output: OutPng = None,
) -> None:
    """A 2-D map of the layer's feature space, coloured by label (or predicted class)."""
    import numpy as np

    from . import plots
    from .dataset.views import colour_classes, grid_assignment, model_view
    from .dataset.views import embed as make_map

    if method not in ("pca", "tsne", "umap"):
        raise ArgumentError(f"--method must be pca, tsne or umap, not {method!r}")
    path = _png(output, f"embed-{_stem(dataset)}-{method}.png")
    m, res, layer = _prepare(
        dataset, model, weights, trust_checkpoint, device, layer, pool, batch_size, workers, cache, predict=True
    )
    coll = res.collection
    rng = np.random.default_rng(seed)
    n = len(coll)
    rows = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    every, names, by = colour_classes(res, m)
    labels = [every[i] for i in rows]
    emb = make_map(np.asarray(res.features(layer))[rows], method, labels, seed=seed)
    stats = f"trustworthiness {emb.trustworthiness:.3f}"
    if emb.explained:
        stats += f", explained variance {emb.explained[0]:.1%} + {emb.explained[1]:.1%}"
    if emb.knn_accuracy is not None:
        stats += f", 5-NN {by} accuracy in 2-D {emb.knn_accuracy:.1%}"
    title = f"{m.name}, {layer} ({res.pool}-pooled), {len(rows)} images: {emb.params}\n{stats}; colour: {by}"
    plots.scatter(path, emb.coords, labels, names, title)
    out.print(f"wrote {path}  ({stats})")
    if mosaic:
        pick = np.sort(rng.choice(len(rows), tiles, replace=False)) if len(rows) > tiles else np.arange(len(rows))
        cells, r, c = grid_assignment(emb.coords[pick])
        mpath = path.with_name(f"{path.stem}-mosaic.png")
        plots.mosaic(mpath, cells, r, c, lambda i: model_view(m, coll.read(int(rows[pick[i]]))))
        out.print(f"wrote {mpath}")
    if html:
        from .report.dataset_page import write_map_site

        folder = path.with_name(f"{path.stem}-map")
        index = write_map_site(
            folder, m, res, layer, emb.coords, rows.tolist(), labels, names, f"{emb.params}: {layer}",
            f"{len(rows)} images of {dataset}; {stats}; colour: {by}.",
        )  # fmt: skip
        out.print(f"wrote {index}")


@app.command("top-patches")
def top_patches(
    dataset: DatasetArg,
    units: Annotated[str, typer.Option("--units", "-u", help="units: 7, 3,5,9 or 0-15")] = "0-15",
    k: Annotated[int, typer.Option("-k", min=1, max=64, help="patches per unit")] = 9,
    layer: LayerOpt = None,
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    batch_size: BatchOpt = 32,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
    output: OutPng = None,
) -> None:
    """For each unit, the dataset patches that activate it most, cropped to its receptive field."""
    from . import plots
    from .cli_synthesis import _parse_units
    from .dataset import open_dataset
    from .dataset.views import top_patches as find

    path = _png(output, f"top-patches-{_stem(dataset)}.png")
    unit_list = _parse_units(units)
    coll = open_dataset(dataset)
    if k > len(coll):
        raise ArgumentError(f"-k {k} is more than the dataset's {len(coll)} images")
    m, res, layer = _prepare(
        coll, model, weights, trust_checkpoint, device, layer, "mean", batch_size, workers, cache, topk=max(16, k)
    )
    found = find(m, res, layer, unit_list, k)
    coll = res.collection
    rows = [[(p.image, f"{p.value:.2f} {coll.label_name(p.row)}".strip()) for p in found[u]] for u in unit_list]
    title = (
        f"{m.name}, {layer}: the {k} images of {len(coll)} where each unit is strongest (value: its maximum),\n"
        "cropped to the receptive field of that position (grey: beyond the image)"
    )
    plots.patch_grid(path, unit_list, rows, title)
    out.print(f"wrote {path}")
