"""Views on a dataset pass: nearest neighbours, 2-D maps of feature space, top patches.

They read what `run_pass` stored and return plain arrays and small result objects; drawing is
done by `visionlens.plots`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ArgumentError, LayerError
from ..fields import ReceptiveField, receptive_fields
from ..layers import check_units, map_layout
from ..models import Model, as_model
from .ann import APPROX_MIN_ROWS, ApproxIndex, cached_index
from .engine import PIXELS, PassResult, _safe, run_pass
from .sources import Collection


def model_view(model: Model, img: Image.Image) -> np.ndarray:
    """What the model sees of `img`: resized and centre-cropped, not normalized.

    Args:
        model: the model whose preprocessing to apply.
        img: an RGB PIL image.

    Returns:
        (S, S, 3) float32 RGB in [0, 1], S the model's input size.

    Example:
        >>> from visionlens.dataset.views import model_view
        >>> model_view(vl.load_model(), vl.load_image("chelsea")).shape
        (224, 224, 3)
    """
    return np.asarray(model.preprocessing.crop(img), dtype=np.float32) / 255.0


# ---------------------------------------------------------------- nearest neighbours


def _normalized(a: np.ndarray, block: int = 16384) -> np.ndarray:
    out = np.empty(a.shape, np.float32)
    for s in range(0, len(a), block):
        x = np.asarray(a[s : s + block], np.float32)
        out[s : s + block] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def _faiss() -> ModuleType | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: Sequence[int] | None = None,
    use_faiss: bool = True,
    index: ApproxIndex | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `base` for each query by cosine distance, closest first: exact
    with FAISS's flat inner-product index when available, else a blocked torch matmul; or
    approximate with a prebuilt `index` (`visionlens.dataset.ann`).

    Args:
        base: (N, D) feature rows (a memory-mapped array is fine).
        queries: (Q, D) query rows.
        k: neighbours per query; at most N (N - 1 with `exclude`).
        exclude: one row index per query that is never returned for it (the query itself when
            it comes from the base), or -1.
        use_faiss: use FAISS when it is installed.
        index: an approximate index over `base` (`ann.build_index`/`ann.cached_index`) to
            search instead of every row.

    Returns:
        (distances, indices), each (Q, k): cosine distances in [0, 2] (float32) and row
        indices into `base` (int64).

    Example:
        >>> from visionlens.dataset.views import knn
        >>> base = np.eye(4, dtype=np.float32)
        >>> knn(base, base[:1], 2)
        (array([[0., 1.]], dtype=float32), array([[0, 1]]))
    """
    n = len(base)
    extra = 0 if exclude is None else 1
    if k + extra > n:
        raise ArgumentError(f"k={k} neighbours asked for, but the dataset has only {n - extra} other images")
    kk = k + extra
    sims: np.ndarray
    idx: np.ndarray
    faiss = _faiss() if use_faiss else None
    q = np.asarray(queries, np.float32)
    if index is not None:
        sims, idx = index.search(q, kk)
    elif faiss is not None:
        b = np.array(base, dtype=np.float32, order="C", copy=True)
        q = np.array(queries, dtype=np.float32, order="C", copy=True)
        faiss.normalize_L2(b)  # in place, multithreaded; zero rows stay zero
        faiss.normalize_L2(q)
        flat = faiss.IndexFlatIP(b.shape[1])
        flat.add(b)
        sims, idx = flat.search(q, kk)
    else:
        tb = torch.from_numpy(_normalized(base))
        q = _normalized(q)
        sims_l, idx_l = [], []
        for s in range(0, len(q), 1024):
            sim = torch.from_numpy(q[s : s + 1024]) @ tb.T
            v, i = sim.topk(kk, dim=1)
            sims_l.append(v.numpy())
            idx_l.append(i.numpy())
        sims, idx = np.concatenate(sims_l), np.concatenate(idx_l)
    if exclude is not None:
        ex = np.asarray(exclude)[:, None]
        keep = idx != ex
        # drop the excluded row where it appears, else the last (k+1-th) candidate
        keep[keep.all(1), -1] = False
        idx = idx[keep].reshape(len(q), k)
        sims = sims[keep].reshape(len(q), k)
    return np.maximum(1.0 - sims, 0.0).astype(np.float32), idx.astype(np.int64)  # no -0.00 from rounding


@dataclass
class Neighbors:
    """Nearest neighbours of each query in feature space and in pixel space (row indices
    into `result.collection`); `neighbors` makes it, `plots` draws it.

    Attributes:
        result: the pass the neighbours come from.
        layer: the layer whose pooled features were compared.
        query_images: the Q query images (RGB PIL).
        query_names: their display names.
        query_labels: their labels; -1 when unknown.
        feature: (Q, k) rows of the nearest neighbours in feature space, closest first.
        feature_dist: (Q, k) their cosine distances.
        pixel: (Q, k) rows of the nearest neighbours in pixel space.
        pixel_dist: (Q, k) their cosine distances.
        approx: "" for exact search, else how approximate it was (index, nprobe, measured
            recall@10 in feature space; pixel space likewise).

    Example:
        >>> from visionlens.dataset import run_pass
        >>> from visionlens.dataset.views import neighbors
        >>> model = vl.load_model("digits_cnn")
        >>> nb = neighbors(model, run_pass(model, "digits", ["features.relu3"]), "features.relu3", k=4)
        >>> nb.feature.shape, nb.query_names[0]
        ((6, 4), 'digits/1516')
    """

    result: PassResult
    layer: str
    query_images: list[Image.Image]
    query_names: list[str]
    query_labels: list[int]
    feature: np.ndarray
    feature_dist: np.ndarray
    pixel: np.ndarray
    pixel_dist: np.ndarray
    approx: str = ""


def default_queries(coll: Collection, n: int = 6, seed: int = 0) -> list[int]:
    """Rows to use as neighbour queries: one per class first when the collection has labels
    (a random image of each), else evenly spaced over the collection.

    Args:
        coll: the collection.
        n: how many rows (at most its size).
        seed: seed of the random picks.

    Returns:
        Row indices into `coll`.

    Example:
        >>> from visionlens.dataset import open_dataset
        >>> from visionlens.dataset.views import default_queries
        >>> default_queries(open_dataset("samples"), 3)
        [0, 6, 12]
    """
    rng = np.random.default_rng(seed)
    if coll.labels is not None and max(coll.labels) >= 0:
        labels = np.asarray(coll.labels)
        classes = [c for c in np.unique(labels) if c >= 0]
        picks = [int(rng.choice(np.flatnonzero(labels == c))) for c in classes[:n]]
        rest = [i for i in rng.permutation(len(coll)) if i not in picks]
        return (picks + [int(i) for i in rest])[: min(n, len(coll))]
    return [int(i) for i in np.linspace(0, len(coll) - 1, min(n, len(coll))).round().astype(int)]


def neighbors(
    model: Model | torch.nn.Module,
    result: PassResult,
    layer: str,
    k: int = 8,
    queries: Sequence[int] | None = None,
    query_files: Sequence[str | os.PathLike[str]] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    approx: bool | None = None,
) -> Neighbors:
    """k nearest neighbours of dataset rows `queries` (default: a few spread over the labels)
    or of outside images `query_files`, in `layer`'s pooled features and in raw pixels.

    Args:
        model: the model the pass ran (outside images go through it too).
        result: a `run_pass` result that captured `layer`.
        layer: the layer whose pooled features to compare.
        k: neighbours per query.
        queries: dataset rows to query (each is left out of its own neighbours); default:
            `default_queries`.
        query_files: image files (or sample names) from outside the dataset to query instead.
        cache_dir: the cache for the query images' pass (default: beside `result`'s).
        approx: search an approximate FAISS index (IVF-Flat tuned to recall@10 >= 0.95 on
            held-out queries, kept in the pass's cache folder); None: from
            `ann.APPROX_MIN_ROWS` rows on.

    Returns:
        A `Neighbors` with (Q, k) neighbour rows and cosine distances in both spaces.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> model = vl.load_model("digits_cnn")
        >>> result = run_pass(model, "digits", ["features.relu3"])
        >>> vl.neighbors(model, result, "features.relu3", k=4, queries=[0, 1]).feature.shape
        (2, 4)
    """
    model = as_model(model)
    coll = result.collection
    feats, pix = result.features(layer), result.pixels()
    if query_files:
        from .sources import listing_of

        qcoll = listing_of([str(p) for p in query_files])
        qres = run_pass(model, qcoll, [layer], pool=result.pool, cache_dir=cache_dir or result.cache_dir.parent)
        if qres.skipped:
            raise ArgumentError(qres.skipped[0][1])
        qf, qp, exclude = np.asarray(qres.features(layer)), np.asarray(qres.pixels()), None
        images = [qcoll.read(i) for i in range(len(qcoll))]
        names, labels = list(qcoll.paths), [-1] * len(qcoll)
    else:
        rows = list(queries) if queries is not None else default_queries(coll)
        for r in rows:
            if not 0 <= r < len(coll):
                raise ArgumentError(f"query row {r} is out of range: the dataset has {len(coll)} images")
        qf, qp, exclude = np.asarray(feats[rows]), np.asarray(pix[rows]), rows
        images = [coll.read(r) for r in rows]
        names = [coll.paths[r] for r in rows]
        labels = [coll.labels[r] if coll.labels is not None else -1 for r in rows]
    use = approx if approx is not None else len(feats) >= APPROX_MIN_ROWS
    fx = cached_index(feats, result.cache_dir, _safe(layer)) if use else None
    px = cached_index(pix, result.cache_dir, PIXELS) if use else None
    fd, fi = knn(feats, qf, k, exclude, index=fx)
    pd, pi = knn(pix, qp, k, exclude, index=px)
    note = "" if fx is None or px is None else f"{fx.describe()}; pixels: recall@{px.k} {px.recall:.3f}"
    return Neighbors(result, layer, images, names, labels, fi, fd, pi, pd, note)


def label_agreement(nb: Neighbors) -> tuple[float, float]:
    """Fraction of (feature, pixel) neighbours sharing their query's label.

    Args:
        nb: neighbours of labelled queries in a labelled collection.

    Returns:
        (feature-space agreement, pixel-space agreement), each in [0, 1].

    Example:
        >>> from visionlens.dataset import run_pass
        >>> from visionlens.dataset.views import label_agreement, neighbors
        >>> model = vl.load_model("digits_cnn")
        >>> label_agreement(neighbors(model, run_pass(model, "digits", ["features.relu3"]), "features.relu3"))
        (1.0, 1.0)
    """
    labels = np.asarray(nb.result.collection.labels)
    q = np.asarray(nb.query_labels)[:, None]
    return float((labels[nb.feature] == q).mean()), float((labels[nb.pixel] == q).mean())


# ---------------------------------------------------------------- 2-D maps


def colour_classes(result: PassResult, model: Model) -> tuple[list[int], list[str], str]:
    """What to colour each image of a pass by: its label when the dataset is labelled, else
    its predicted class (the pass needs predict=True; without predictions all get class 0).

    Args:
        result: the pass.
        model: the model, for the names of predicted classes.

    Returns:
        (class per row, class names, "label" or "predicted class"); predicted classes are
        renumbered 0..m-1 over the m classes that occur.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> from visionlens.dataset.views import colour_classes
        >>> model = vl.load_model("digits_cnn")
        >>> classes, names, kind = colour_classes(run_pass(model, "digits", ["features.relu3"]), model)
        >>> len(classes), names[:3], kind
        (1797, ['0', '1', '2'], 'label')
    """
    coll = result.collection
    if coll.labels is not None and min(coll.labels) >= 0:
        return list(coll.labels), list(coll.classes), "label"
    pred = result.predictions()
    cls = pred[0] if pred is not None else np.zeros(len(coll), np.int64)
    uniq = sorted(set(cls.tolist()))
    return [uniq.index(c) for c in cls], [model.short_label(c) for c in uniq], "predicted class"


@dataclass
class Embedding:
    """A 2-D map of feature space and how faithful it is; `embed` makes it.

    Attributes:
        coords: (N, 2) float32 map coordinates, one row per feature row.
        method: "pca", "tsne" or "umap".
        trustworthiness: sklearn's trustworthiness of the map (5 neighbours), in [0, 1].
        explained: PCA only: the variance ratio of the two components; else None.
        knn_accuracy: 5-NN label accuracy in the map when labels were given, in [0, 1].
        params: the method and its parameters, as one line of text.

    Example:
        >>> from visionlens.dataset.views import embed
        >>> m = embed(np.random.default_rng(0).random((100, 8)), "pca")
        >>> m.coords.shape, m.method, m.knn_accuracy
        ((100, 2), 'pca', None)
    """

    coords: np.ndarray
    method: str
    trustworthiness: float
    explained: tuple[float, float] | None
    knn_accuracy: float | None
    params: str


def embed(
    features: np.ndarray,
    method: str = "tsne",
    labels: Sequence[int] | None = None,
    seed: int = 0,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    trust_points: int = 2000,
    fit_points: int = 100_000,
) -> Embedding:
    """A 2-D map of feature space by PCA, t-SNE (openTSNE, after PCA to 50 dimensions) or
    UMAP, with its trustworthiness (5 neighbours, on at most `trust_points` points).

    Args:
        features: (N, D) feature rows, N >= 4 (e.g. `PassResult.features(layer)`).
        method: "pca", "tsne" or "umap".
        labels: one class per row (all >= 0), to measure 5-NN accuracy in the map.
        seed: random seed of the method and the trustworthiness sample.
        perplexity: t-SNE's perplexity (capped at (N - 1) / 3).
        n_neighbors: UMAP's neighbourhood size (capped at N - 1).
        trust_points: at most this many points are used to measure trustworthiness.
        fit_points: above this many rows, t-SNE and UMAP are fitted on a random sample of
            this size and the other rows are placed by the fitted map's `transform` (openTSNE
            and umap-learn both offer it), in blocks; `params` says so.

    Returns:
        An `Embedding` with (N, 2) coordinates.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> result = run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"])
        >>> m = vl.embed(result.features("features.relu3"), "pca", labels=result.collection.labels)
        >>> m.coords.shape, m.params
        ((1797, 2), 'PCA, 2 components')
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    x = np.asarray(features, np.float32)
    n = len(x)
    if n < 4:
        raise ArgumentError(f"a 2-D map needs at least 4 images; the dataset has {n}")
    explained = None
    if method == "pca":
        pca = PCA(2, random_state=seed).fit(x)
        y = pca.transform(x)
        explained = (float(pca.explained_variance_ratio_[0]), float(pca.explained_variance_ratio_[1]))
        params = "PCA, 2 components"
    elif method == "tsne":
        from openTSNE import TSNE

        fit = _fit_rows(n, fit_points, seed)
        pca = PCA(min(50, x.shape[1], len(fit)), random_state=seed).fit(x[fit]) if x.shape[1] > 50 else None
        xr = _blocks(pca.transform, x) if pca is not None else x
        perp = min(perplexity, (len(fit) - 1) / 3)
        tsne = TSNE(perplexity=perp, random_state=seed, n_jobs=os.cpu_count() or 1).fit(xr[fit])
        y = _placed(n, fit, np.asarray(tsne), tsne.transform, xr)
        params = f"t-SNE (openTSNE), perplexity {perp:g}, after PCA to {xr.shape[1]} dims" + _fitted_on(fit, n)
    elif method == "umap":
        import umap

        fit = _fit_rows(n, fit_points, seed)
        nn_ = min(n_neighbors, len(fit) - 1)
        reducer = umap.UMAP(n_neighbors=nn_, random_state=seed, n_jobs=1)
        y = _placed(n, fit, reducer.fit_transform(x[fit]), reducer.transform, x)
        params = f"UMAP, {nn_} neighbours" + _fitted_on(fit, n)
    else:
        raise ArgumentError(f"`method` must be pca, tsne or umap, not {method!r}")
    y = np.asarray(y, np.float32)
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(n, min(n, trust_points), replace=False))
    kn = min(5, len(sub) // 2 - 1)
    trust = float(trustworthiness(x[sub], y[sub], n_neighbors=max(1, kn)))
    acc = None
    if labels is not None and min(labels) >= 0 and n > 5:
        from sklearn.neighbors import KNeighborsClassifier

        lab = np.asarray(labels)
        clf = KNeighborsClassifier(6).fit(y, lab)
        # 6 neighbours with the point itself among them: vote of its 5 true neighbours
        _, ind = clf.kneighbors(y)
        votes = lab[ind[:, 1:]]
        pred = np.array([np.bincount(v).argmax() for v in votes])
        acc = float((pred == lab).mean())
    return Embedding(y, method, trust, explained, acc, params)


def _fit_rows(n: int, fit_points: int, seed: int) -> np.ndarray:
    """The rows a map is fitted on: all of them, or a sorted random sample of `fit_points`."""
    if n <= fit_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max(4, fit_points), replace=False))


def _blocks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, block: int = 65536) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[s : s + block]), np.float32) for s in range(0, len(x), block)])


def _placed(
    n: int, fit: np.ndarray, fitted: np.ndarray, transform: Callable[[np.ndarray], Any], x: np.ndarray
) -> np.ndarray:
    """(n, 2): the fitted rows' coordinates, and the others placed by `transform`, in blocks."""
    if len(fit) == n:
        return np.asarray(fitted, np.float32)
    y = np.empty((n, 2), np.float32)
    y[fit] = fitted
    rest = np.setdiff1d(np.arange(n), fit)
    y[rest] = _blocks(lambda b: np.asarray(transform(b)), x[rest])
    return y


def _fitted_on(fit: np.ndarray, n: int) -> str:
    return "" if len(fit) == n else f", fitted on {len(fit):,} of {n:,} points (the rest placed by transform)"


def grid_assignment(coords: np.ndarray, cols: int | None = None) -> tuple[np.ndarray, int, int]:
    """Each point's cell (row, col) on a regular grid, chosen by solving the assignment of
    points to cells that minimizes the total squared distance (the 'CNN codes' mosaic).

    Args:
        coords: (N, 2) map coordinates (x, y), any scale.
        cols: grid columns (default: ceil(sqrt(N))); rows follow.

    Returns:
        (cells (N, 2) int64 as (row, col), rows, cols); each cell holds at most one point.

    Example:
        >>> from visionlens.dataset.views import grid_assignment
        >>> cells, rows, cols = grid_assignment(np.random.default_rng(0).random((10, 2)))
        >>> cells.shape, rows, cols
        ((10, 2), 3, 4)
    """
    from scipy.optimize import linear_sum_assignment

    n = len(coords)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    c = np.asarray(coords, np.float64)
    c = (c - c.min(0)) / np.maximum(np.ptp(c, 0), 1e-12)
    gy, gx = np.mgrid[0:rows, 0:cols]
    cells = np.stack([gx.ravel() / max(1, cols - 1), gy.ravel() / max(1, rows - 1)], 1)
    cost = ((c[:, None, :] - cells[None]) ** 2).sum(-1)
    pts, cell = linear_sum_assignment(cost)
    out = np.empty((n, 2), np.int64)
    out[pts, 0] = cell // cols
    out[pts, 1] = cell % cols
    return out, rows, cols


# ---------------------------------------------------------------- top patches


@dataclass
class Patch:
    """One of a unit's top dataset patches; `top_patches` makes them.

    Attributes:
        row: the image's row in `result.collection`.
        value: the unit's maximum on that image.
        position: (y, x) of the maximum on the layer's map.
        box: (top, left, bottom, right) of the receptive field in the model's input, in px,
            clipped to the image.
        image: the whole receptive field, (h, w, 3) RGB in [0, 1], grey (0.5) where it
            reaches past the image, so the unit's position is at its centre.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> model = vl.load_model("digits_cnn")
        >>> patch = vl.top_patches(model, run_pass(model, "digits", ["features.relu3"]), "features.relu3", [0])[0][0]
        >>> patch.image.shape, patch.position
        ((8, 8, 3), (1, 2))
    """

    row: int
    value: float
    position: tuple[int, int]
    box: tuple[int, int, int, int]
    image: np.ndarray


def top_patches(
    model: Model | torch.nn.Module, result: PassResult, layer: str, units: Sequence[int], k: int = 9
) -> dict[int, list[Patch]]:
    """For each unit, the k dataset images whose maximum of that unit is highest, cropped to
    the receptive field (measured on the network) of the position of that maximum. On a
    token grid or a channels-last map after attention, where every position sees the whole
    image, the crop is the position's patch with one patch of context around it.

    Args:
        model: the model the pass ran.
        result: a `run_pass` result that captured `layer`.
        layer: a layer whose output is a map (channels-first, channels-last or a token grid).
        units: channel indices of `layer`.
        k: patches per unit, at most the pass's `topk`.

    Returns:
        {unit: its `Patch`es, highest first} (fewer than k for a dataset smaller than k).

    Example:
        >>> from visionlens.dataset import run_pass
        >>> model = vl.load_model("digits_cnn")
        >>> result = run_pass(model, "digits", ["features.relu3"])
        >>> patches = vl.top_patches(model, result, "features.relu3", units=[0, 5], k=4)
        >>> sorted(patches), len(patches[5])
        ([0, 5], 4)
    """
    model = as_model(model)
    shape = result.shapes.get(layer)
    if shape is None:
        raise ArgumentError(f"layer {layer!r} was not captured in this pass")
    if len(shape) != 3:
        raise LayerError(
            f"layer {layer!r} has no spatial output (shape {tuple(shape)}); top patches need a "
            "convolutional layer with an (C, H, W) output (see `visionlens layers`)"
        )
    top = result.top(layer)
    check_units(layer, units, shape[0])
    if k > top.values.shape[1]:
        raise ArgumentError(f"`k` {k} is more than the {top.values.shape[1]} kept per unit by this pass")
    size = model.preprocessing.input_size
    measurable = map_layout(model, layer).kind == "channels_first"
    rf = receptive_fields(model.net, size, [layer]).get(layer) if measurable else None
    if rf is None and shape[1] > 1:  # no measured field (attention, channels-last): patch and context
        s = max(1, round(size / shape[1]))
        rf = ReceptiveField((3 * s, 3 * s), (s, s), (s, s))
    coll = result.collection
    views: dict[int, np.ndarray] = {}
    out: dict[int, list[Patch]] = {}
    for u in units:
        patches = []
        for i in range(k):
            row = int(top.rows[u, i])
            if row < 0:
                break
            y, x = (int(v) for v in top.positions[u, i])
            if row not in views:
                views[row] = model_view(model, coll.read(row))
            if rf is not None:
                t, b = rf.span(y, 0)
                lft, r = rf.span(x, 1)
            else:  # no measurable field: the whole image
                t, lft, b, r = 0, 0, size, size
            box = (max(0, t), max(0, lft), min(size, b), min(size, r))
            # the whole field, grey where it reaches past the image, so the unit is at the centre
            crop = np.full((b - t, r - lft, 3), 0.5, np.float32)
            crop[box[0] - t : box[2] - t, box[1] - lft : box[3] - lft] = views[row][box[0] : box[2], box[1] : box[3]]
            patches.append(Patch(row, float(top.values[u, i]), (y, x), box, crop))
        out[u] = patches
    return out


__all__ = [
    "PIXELS",
    "Embedding",
    "Neighbors",
    "Patch",
    "colour_classes",
    "default_queries",
    "embed",
    "grid_assignment",
    "knn",
    "label_agreement",
    "model_view",
    "neighbors",
    "top_patches",
]
