"""Commands on image collections: neighbors, embed, top-patches. Each runs the dataset pass
(cached) and draws a view of what it stored."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ArgumentError
from .app import app
from .options import ModelSpec, grouped, out, output_path, stem, wrote
from .parsing import int_list

if TYPE_CHECKING:
    from ..dataset import Collection, PassResult
    from ..models import Model

PANEL = "Dataset"
DatasetArg = Annotated[
    str, typer.Argument(help="folder of images (subfolders = labels), .txt list of paths, or samples / digits")
]
PoolOpt = Annotated[str, typer.Option("--pool", help="spatial pooling of features: mean or max")]
PngOut = Annotated[Path | None, typer.Option("--output", "-o", help="PNG to write")]


@dataclasses.dataclass(frozen=True)
class PassOptions:
    """Which layer the dataset pass keeps, how it reads the images, where it caches."""

    layer: Annotated[
        str | None,
        typer.Option("--layer", "-l", help="layer (default: the last spatial layer, before the classifier)"),
    ] = None
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="images per batch")] = 32
    workers: Annotated[int | None, typer.Option("--workers", min=0, help="reading processes (default: auto)")] = None
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache", help="feature cache folder (default: $VISIONLENS_CACHE or ~/.cache/visionlens)"),
    ] = None
    engine: Annotated[
        str, typer.Option("--engine", help="local (this process) or ray (Ray Data and an actor pool; pip install ray)")
    ] = "local"
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster for --engine ray: HOST:PORT from `ray start --head`, or auto"),
    ] = None


def _pass(
    dataset: str | Collection, spec: ModelSpec, opts: PassOptions, pool: str = "mean", topk: int = 16,
    predict: bool = False,
) -> tuple[Model, PassResult, str]:  # fmt: skip
    """The model, the pass over the dataset (opened before the model: a bad dataset fails
    fast) and the layer it kept; says which images were skipped."""
    from ..dataset import open_dataset, run_pass
    from ..layers import last_spatial_layer

    coll = open_dataset(dataset)
    m = spec.load()
    layer = opts.layer or last_spatial_layer(m, m.preprocessing.input_size)
    res = run_pass(
        m, coll, [layer], pool=pool, topk=topk, batch_size=opts.batch_size, workers=opts.workers,
        cache_dir=opts.cache_dir, predict=predict, progress=True, engine=opts.engine, address=opts.address,
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


@app.command(rich_help_panel=PANEL)
@grouped
def neighbors(
    dataset: DatasetArg,
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="query image (repeatable)")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="neighbours per query")] = 8,
    queries: Annotated[int, typer.Option("--queries", min=1, help="dataset queries when no --query")] = 6,
    pool: PoolOpt = "mean",
    approx: Annotated[
        bool | None,
        typer.Option(
            "--approx/--exact",
            help="approximate search (a FAISS IVF index tuned to recall@10 >= 0.95, measured and printed) or exact; "
            "default: approximate from 200,000 images on",
        ),
    ] = None,
    spec: ModelSpec = ModelSpec(),
    opts: PassOptions = PassOptions(),
    output: PngOut = None,
    save_array: Annotated[
        bool,
        typer.Option(
            "--save-array",
            help="also write the neighbours as .npz beside the PNG: feature_rows, feature_distances, pixel_rows, "
            "pixel_distances (queries x k; rows of the dataset's listing), the same as feature_paths and "
            "pixel_paths, and query_names",
        ),
    ] = False,
) -> None:
    """Each query beside its k nearest neighbours in feature space and in pixel space."""
    import numpy as np

    from .. import plots
    from ..dataset.views import default_queries, label_agreement, model_view
    from ..dataset.views import neighbors as find

    path = output_path(output, f"neighbors-{stem(dataset)}.png")
    m, res, layer = _pass(dataset, spec, opts, pool)
    coll = res.collection
    nb = find(m, res, layer, k, None if query else default_queries(coll, queries), query or (), opts.cache_dir, approx)
    if nb.approx:
        out.print(nb.approx)

    def tiles(idx: Any, dist: Any, q: int) -> list[tuple[Any, str, bool | None]]:
        ql = nb.query_labels[q]
        row = []
        for i, d in zip(idx, dist, strict=True):
            lab = coll.labels[i] if coll.labels is not None else -1
            same = None if ql < 0 or lab < 0 else bool(lab == ql)
            cap = (
                f"{coll.label_name(i)} {d:.2f}".strip()
                if coll.labels is not None
                else f"{Path(coll.paths[i]).stem[:10]} {d:.2f}"
            )
            row.append((model_view(m, coll.read(int(i))), cap, same))
        return row

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
    paths = np.asarray(coll.paths)
    arrays = {
        "feature_rows": nb.feature, "feature_distances": nb.feature_dist, "feature_paths": paths[nb.feature],
        "pixel_rows": nb.pixel, "pixel_distances": nb.pixel_dist, "pixel_paths": paths[nb.pixel],
        "query_names": np.asarray(nb.query_names),
    }  # fmt: skip
    wrote(path, arrays, save_array)


EMBED_OUTPUT_HELP = (
    "what to write, by its suffix: .png: the scatter plot (and, with --html, the interactive map in NAME-map/"
    "index.html); .html: the interactive map page itself, with its assets/, data/ and figures/ beside it "
    "(give it a folder of its own, e.g. map/index.html)"
)


@app.command(rich_help_panel=PANEL)
@grouped
def embed(
    dataset: DatasetArg,
    method: Annotated[str, typer.Option("--method", help="pca, tsne or umap")] = "tsne",
    mosaic: Annotated[bool, typer.Option("--mosaic", help="also lay the images on a grid (NAME-mosaic.png)")] = False,
    html: Annotated[
        bool, typer.Option("--html", help="also write an interactive page (pan, zoom, hover); see --output")
    ] = False,
    max_points: Annotated[int, typer.Option("--max-points", min=4, help="embed a random subset this large")] = 20000,
    tiles: Annotated[int, typer.Option("--tiles", min=4, help="images in the mosaic at most")] = 1024,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    pool: PoolOpt = "mean",
    spec: ModelSpec = ModelSpec(),
    opts: PassOptions = PassOptions(),
    output: Annotated[Path | None, typer.Option("--output", "-o", help=EMBED_OUTPUT_HELP)] = None,
) -> None:
    """A 2-D map of the layer's feature space, coloured by label (or predicted class)."""
    import numpy as np

    from .. import plots
    from ..dataset.views import colour_classes, grid_assignment, model_view
    from ..dataset.views import embed as make_map

    if method not in ("pca", "tsne", "umap"):  # before the pass, which can take minutes
        raise ArgumentError(f"--method must be pca, tsne or umap, not {method!r}")
    path = output_path(output, f"embed-{stem(dataset)}-{method}.png", (".png", ".html"))
    page = path.suffix.lower() == ".html"
    m, res, layer = _pass(dataset, spec, opts, pool, predict=True)
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
    if not page:
        title = f"{m.name}, {layer} ({res.pool}-pooled), {len(rows)} images: {emb.params}\n{stats}; colour: {by}"
        plots.scatter(path, emb.coords, labels, names, title)
        wrote(path, note=stats)
    if mosaic:
        pick = np.sort(rng.choice(len(rows), tiles, replace=False)) if len(rows) > tiles else np.arange(len(rows))
        cells, r, c = grid_assignment(emb.coords[pick])
        mpath = path.with_name(f"{path.stem}-mosaic.png")
        plots.mosaic(mpath, cells, r, c, lambda i: model_view(m, coll.read(int(rows[pick[i]]))))
        wrote(mpath)
    if html or page:
        from ..report.dataset_page import write_map_site

        folder, name = (path.parent, path.name) if page else (path.with_name(f"{path.stem}-map"), "index.html")
        index = write_map_site(
            folder, m, res, layer, emb.coords, rows.tolist(), labels, names, f"{emb.params}: {layer}",
            f"{len(rows)} images of {dataset}; {stats}; colour: {by}.", page_name=name,
        )  # fmt: skip
        wrote(index, note=stats if page else "")


@app.command("top-patches", rich_help_panel=PANEL)
@grouped
def top_patches(
    dataset: DatasetArg,
    units: Annotated[str, typer.Option("--units", "-u", help="units: 7, 3,5,9 or 0-15")] = "0-15",
    k: Annotated[int, typer.Option("-k", min=1, max=64, help="patches per unit")] = 9,
    spec: ModelSpec = ModelSpec(),
    opts: PassOptions = PassOptions(),
    output: PngOut = None,
) -> None:
    """For each unit, the dataset patches that activate it most, cropped to its receptive field."""
    from .. import plots
    from ..dataset import open_dataset
    from ..dataset.views import top_patches as find

    path = output_path(output, f"top-patches-{stem(dataset)}.png")
    unit_list = int_list(units, "units")
    coll = open_dataset(dataset)
    if k > len(coll):
        raise ArgumentError(f"-k {k} is more than the dataset's {len(coll)} images")
    m, res, layer = _pass(coll, spec, opts, topk=max(16, k))
    found = find(m, res, layer, unit_list, k)
    coll = res.collection
    rows = [[(p.image, f"{p.value:.2f} {coll.label_name(p.row)}".strip()) for p in found[u]] for u in unit_list]
    title = (
        f"{m.name}, {layer}: the {k} images of {len(coll)} where each unit is strongest (value: its maximum),\n"
        "cropped to the receptive field of that position (grey: beyond the image)"
    )
    plots.patch_grid(path, unit_list, rows, title)
    wrote(path)
