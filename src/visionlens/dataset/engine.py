"""The dataset pass: ONE streaming run of a model over an image collection that reduces the
outputs of named layers on the fly, so memory stays bounded whatever the dataset size.

Per layer it stores
- pooled feature vectors (spatial mean or max), one row per image, in an .npy file on disk
  written row block by row block (views memory-map it);
- a running top-k per unit: the k images with the highest spatial maximum of that unit, and
  where in the layer's map that maximum is (ties broken by image order, so the result is
  deterministic);
and for the collection the images' downsampled pixels (for pixel-space neighbours).

Everything lives in a cache folder keyed on the model's weights, the layers, the pooling, the
preprocessing and the dataset's fingerprint; a finished cache is reused, an unfinished one is
resumed from its last checkpoint and ends identical to an uninterrupted pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from ..errors import ArgumentError, ImageError, VisionlensError
from ..io import atomic_file, fingerprint, model_fingerprint
from ..layermaps import MapLayout
from ..layers import dry_run, layer_layouts
from ..models import Model, as_model
from ..probe import Probe, resolve_layer
from ..progress import Progress
from .sources import Collection, open_dataset

FORMAT = 2  # 2: token grids and channels-last maps are stored as (C, H, W) maps
PIXELS = "pixels"  # pseudo-layer: the model input average-pooled to at most 16 x 16
"""Pseudo-layer of every pass: each image's model input average-pooled to at most 16 x 16,
flattened to (N, 3 * s * s); pixel-space neighbours use it.

Example:
    >>> from visionlens.dataset import PIXELS, run_pass
    >>> result = run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"])
    >>> result.features(PIXELS).shape  # 8-px inputs: 3 x 8 x 8
    (1797, 192)
"""
PREDICTIONS = "predictions"  # pseudo-layer: (top-1 class, its probability) per image
"""Pseudo-layer of a pass run with `predict=True`: (N, 2) rows of (top-1 class, its
probability); `PassResult.predictions()` splits them.

Example:
    >>> from visionlens.dataset import PREDICTIONS, run_pass
    >>> result = run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"], predict=True)
    >>> result.features(PREDICTIONS)[:2, 0]
    memmap([0., 1.], dtype=float32)
"""
_CHECKPOINT_SECONDS = 2.0
_Tops = dict[str, dict[str, np.ndarray]]  # running top-k per layer: values, rows, positions


class CacheError(VisionlensError):
    """The feature cache cannot be written (disk full, no permission).

    Args:
        message: the folder, the operating system's reason and what to do.

    Example:
        >>> from visionlens.dataset import CacheError, run_pass
        >>> try:
        ...     run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"], cache_dir="/proc/x")
        ... except CacheError as e:
        ...     print(str(e)[:30])
        cannot write the feature cache
    """


def default_cache_dir() -> Path:
    """Where `run_pass` keeps its caches unless given `cache_dir`.

    Returns:
        $VISIONLENS_CACHE if set, else $XDG_CACHE_HOME/visionlens/features, else
        ~/.cache/visionlens/features.

    Example:
        >>> from visionlens.dataset import default_cache_dir
        >>> default_cache_dir().parts[-2:]  # without $VISIONLENS_CACHE
        ('visionlens', 'features')
    """
    env = os.environ.get("VISIONLENS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "visionlens" / "features"


# ---------------------------------------------------------------- results


@dataclass
class TopK:
    """For each unit c: `values[c, i]` is the i-th highest spatial maximum over the dataset,
    reached on row `rows[c, i]` of the features (an image) at `positions[c, i]` = (y, x) of
    the layer's map ((-1, -1) for a layer without spatial output). Entries past the dataset's
    size have rows -1.

    Attributes:
        values: (C, k) float32 maxima, descending along k.
        rows: (C, k) int64 image rows (`PassResult.collection` order); -1: no entry.
        positions: (C, k, 2) int64 (y, x) of each maximum on the layer's map.
        spatial: whether the layer's output is a (C, H, W) map.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> top = run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"]).top("features.relu3")
        >>> top.values.shape, top.positions.shape, top.spatial
        ((128, 16), (128, 16, 2), True)
    """

    values: np.ndarray  # (C, k) float32
    rows: np.ndarray  # (C, k) int64
    positions: np.ndarray  # (C, k, 2) int64
    spatial: bool


@dataclass
class PassResult:
    """What `run_pass` stored: a handle on the cache folder; arrays are read on demand.

    Attributes:
        collection: the readable images only, in row order.
        layers: the layers captured.
        shapes: each layer's output shape without the batch, e.g. (C, H, W).
        pool: how feature vectors were pooled over space: "mean" or "max".
        cache_dir: the folder holding this pass's files.
        skipped: (path, reason) for each image that could not be read.
        reused: True when a finished cache was found and nothing ran.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> result = run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"])
        >>> result.features("features.relu3").shape, result.shapes
        ((1797, 128), {'features.relu3': (128, 4, 4)})
    """

    collection: Collection  # the readable images only, in row order
    layers: list[str]
    shapes: dict[str, tuple[int, ...]]  # each layer's output shape without the batch
    pool: str
    cache_dir: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    reused: bool = False

    def features(self, layer: str) -> np.ndarray:
        """(N, C) pooled features, memory-mapped."""
        if layer not in [*self.layers, PIXELS, PREDICTIONS]:
            raise ArgumentError(f"layer {layer!r} was not captured in this pass ({', '.join(self.layers)})")
        return np.load(self.cache_dir / _feature_file(layer), mmap_mode="r")

    def pixels(self) -> np.ndarray:
        """(N, 3 * s * s) downsampled model inputs, memory-mapped (the `PIXELS` pseudo-layer)."""
        return self.features(PIXELS)

    def predictions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(top-1 class, probability) per image, when the pass ran with predict=True."""
        path = self.cache_dir / _feature_file(PREDICTIONS)
        if not path.is_file():
            return None
        p = np.load(path)
        return p[:, 0].astype(np.int64), p[:, 1]

    def top(self, layer: str) -> TopK:
        """The per-unit top-k of `layer`: which images excite each unit most, and where."""
        with np.load(self.cache_dir / f"top-{_safe(layer)}.npz") as z:
            return TopK(z["values"], z["rows"], z["positions"], bool(z["spatial"]))


def _safe(layer: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in layer)


def _feature_file(layer: str) -> str:
    return f"features-{_safe(layer)}.npy"


# ---------------------------------------------------------------- reading images


class _Images(TorchDataset):
    """Collection items preprocessed for the model; unreadable ones come back flagged."""

    def __init__(self, coll: Collection, model: Model, start: int) -> None:
        self.coll, self.pre, self.start = coll, model.preprocessing, start
        self.size = model.preprocessing.input_size

    def __len__(self) -> int:
        return len(self.coll) - self.start

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int, str]:
        i = self.start + j
        try:
            return self.pre(self.coll.read(i)), i, ""
        except ImageError as e:
            return torch.zeros(3, self.size, self.size), i, str(e)
        except Exception as e:  # noqa: BLE001 - a broken file must never stop the pass
            return torch.zeros(3, self.size, self.size), i, f"{self.coll.paths[i]}: {type(e).__name__}: {e}"


# ---------------------------------------------------------------- row files and top-k


class _RowFile:
    """An (N, C) float32 .npy file filled row block by row block with positional writes, so
    the pass never holds the whole array (nor its pages) in memory."""

    def __init__(self, path: Path, n: int, c: int, create: bool) -> None:
        self.path, self.c = path, c
        if create:
            with open(path, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, c)})
                self.offset = f.tell()
                f.truncate(self.offset + n * c * 4)
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
            self.offset = f.tell()
        if shape != (n, c):
            raise CacheError(f"{path}: has shape {shape}, expected {(n, c)}; delete the cache folder")
        self.fd = os.open(path, os.O_RDWR)

    def write(self, row: int, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype="<f4").tobytes()
        os.pwrite(self.fd, data, self.offset + row * self.c * 4)

    def close(self) -> None:
        os.close(self.fd)


def _merged(state: dict[str, np.ndarray], vals: np.ndarray, rows: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
    """The running (C, k) top-k with a batch's (C, B) per-image maxima merged in.
    Order: value descending, then row ascending."""
    k = state["values"].shape[1]
    v = np.concatenate([state["values"], vals], axis=1)
    r = np.concatenate([state["rows"], rows], axis=1)
    p = np.concatenate([state["positions"], pos], axis=1)
    order = np.lexsort((r, -v), axis=-1)[:, :k]
    return {
        "values": np.take_along_axis(v, order, 1),
        "rows": np.take_along_axis(r, order, 1),
        "positions": np.take_along_axis(p, order[..., None], 1),
    }


def _empty_top(c: int, k: int) -> dict[str, np.ndarray]:
    return {
        "values": np.full((c, k), -np.inf, np.float32),
        "rows": np.full((c, k), np.iinfo(np.int64).max, np.int64),
        "positions": np.full((c, k, 2), -1, np.int64),
    }


def _reduce(act: torch.Tensor, pool: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(pooled (B, C), per-unit maximum (B, C), flat argmax position (B, C) or None)."""
    a = act.float()
    if a.dim() == 4:
        flat = a.flatten(2)
        idx = flat.argmax(2)
        mx = flat.gather(2, idx[..., None])[..., 0]
        pooled = flat.mean(2) if pool == "mean" else mx
        return pooled, mx, idx
    if a.dim() == 3:  # tokens (B, N, C)
        pooled = a.mean(1) if pool == "mean" else a.amax(1)
        return pooled, a.amax(1), None
    a = a.flatten(1)
    return a, a, None


# ---------------------------------------------------------------- the pass


def cache_key(model: Model, coll: Collection, layers: Sequence[str], pool: str, topk: int, predict: bool) -> str:
    """The 20-hex-digit name of the cache folder for exactly this work (weights, preprocessing,
    dataset fingerprint and size, layers, pooling, k, predictions, format version)."""
    desc = {
        "format": FORMAT,
        "model": model_fingerprint(model.net),
        "preprocessing": repr(model.preprocessing),
        "dataset": coll.fingerprint,
        "n": len(coll),
        "layers": list(layers),
        "pool": pool,
        "topk": topk,
        "predict": predict,
    }
    return fingerprint(desc)[:20]


def _write_json(path: Path, obj: Any) -> None:
    with atomic_file(path, "w") as f:
        json.dump(obj, f)


def _checkpoint(job: _Job, tops: _Tops, state: dict[str, Any]) -> None:
    """Save the running top-k and the progress, each atomically (the row files are already
    written in place up to `state["done"]`)."""
    for name in job.layers:
        _write_top(job.folder / f"top-{_safe(name)}.partial.npz", tops[name], len(job.shapes[name]) == 3)
    _write_json(job.folder / "state.json", state)


def _write_top(path: Path, state: dict[str, np.ndarray], spatial: bool) -> None:
    with atomic_file(path) as f:
        np.savez(f, spatial=np.array(spatial), values=state["values"], rows=state["rows"], positions=state["positions"])


def run_pass(
    model: Model | torch.nn.Module,
    dataset: str | os.PathLike[str] | Collection,
    layers: Sequence[str] | str,
    *,
    pool: str = "mean",
    topk: int = 16,
    batch_size: int = 32,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    predict: bool = False,
    progress: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> PassResult:
    """Stream `dataset` through `model` once and store, for each layer, pooled features and a
    per-unit top-k. Returns at once when a finished cache for exactly this work exists; an
    interrupted pass resumes from its last checkpoint. Unreadable images are skipped and
    listed in `PassResult.skipped`.

    Args:
        model: a `Model` or any `nn.Module`; images get its preprocessing.
        dataset: a `Collection` or a spec `open_dataset` takes ("samples", "digits", a folder,
            a .txt list).
        layers: one or more dotted layer names.
        pool: how feature vectors are pooled over space: "mean" or "max".
        topk: images kept per unit, by their spatial maximum.
        batch_size: images per forward pass.
        workers: DataLoader worker processes reading images (None: chosen from the dataset).
        cache_dir: where caches live (default: `default_cache_dir()`).
        predict: also run the whole network and keep each image's top-1 class and probability.
        progress: show a progress bar (plain lines when stderr is not a terminal).
        on_batch: called as on_batch(done, total) after every batch (e.g. to stop a pass
            early in tests).

    Returns:
        A `PassResult` reading the cache: `features(layer)` (N, C), `top(layer)`, `pixels()`.

    Example:
        >>> from visionlens.dataset import run_pass
        >>> result = run_pass(vl.load_model("digits_cnn"), "digits", ["features.relu3"], pool="max")
        >>> result.features("features.relu3").shape, len(result.skipped)
        ((1797, 128), 0)
    """
    model = as_model(model)
    coll = open_dataset(dataset)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ArgumentError("give at least one layer")
    if pool not in ("mean", "max"):
        raise ArgumentError(f"`pool` must be mean or max, not {pool!r}")
    if batch_size < 1 or topk < 1:
        raise ArgumentError("batch size and top-k must be at least 1")
    for name in layers:
        resolve_layer(model.net, name)
    if len(coll) == 0:
        raise ArgumentError(f"{coll.name}: the dataset is empty")

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(model, coll, layers, pool, topk, predict)
    folder = root / key
    index_file = folder / "index.json"
    if index_file.is_file():
        try:
            return _load_result(folder, coll)
        except (OSError, ValueError, KeyError):
            pass  # an unreadable finished cache is rebuilt below
    job = _Job(model, coll, layers, pool, topk, batch_size, workers, folder, predict)
    try:
        return _run(job, progress, on_batch)
    except OSError as e:
        raise CacheError(
            f"cannot write the feature cache in {folder}: {e.strerror or e}; free some space or choose "
            "another folder with `cache_dir` (finished caches are left intact)"
        ) from None


@dataclass
class _Job:
    """What one pass does, worked out once: the inputs, each layer's output shape and stored
    width, the deepest layer (where the forward pass may stop) and the cache folder."""

    model: Model
    coll: Collection
    layers: list[str]
    pool: str
    topk: int
    batch_size: int
    workers: int | None
    folder: Path
    predict: bool
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # (C, H, W) for every map layer
    layouts: dict[str, MapLayout] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # stored row width per file
    deepest: str = ""
    psize: int = 16  # side of the pooled pixels

    def to_map(self, name: str, out: torch.Tensor) -> torch.Tensor:
        """A captured output as (B, C, H, W) when its layer is a map; else as it is."""
        lay = self.layouts[name]
        size = self.model.preprocessing.input_size
        return lay.to_nchw(out, (size, size)) if lay.is_map else out

    def __post_init__(self) -> None:
        size = self.model.preprocessing.input_size
        tr = dry_run(self.model, size)
        missing = [n for n in self.layers if n not in tr.shapes]
        if missing:
            raise ArgumentError(f"layer {missing[0]!r} does not run in the model's forward pass")
        layouts = layer_layouts(self.model, size, tr)
        self.layouts = {n: layouts[n] for n in self.layers}
        # every map is stored as (C, H, W): channels-last maps and token grids alike
        self.shapes = {
            n: (lay.channels, *lay.grid) if lay.is_map and lay.grid else tr.shapes[n] for n, lay in self.layouts.items()
        }
        self.deepest = max(self.layers, key=lambda n: tr.end[n])
        self.psize = min(16, size)
        self.dims = {name: _pooled_dim(shape) for name, shape in self.shapes.items()}
        self.dims[PIXELS] = 3 * self.psize * self.psize
        if self.predict:
            self.dims[PREDICTIONS] = 2


def _resume(job: _Job) -> tuple[_Tops, dict[str, Any], bool]:
    """(running top-k per layer, {done, skipped}, whether a checkpoint was found) from the
    folder's last checkpoint, or a fresh start when there is none or it is unreadable."""
    fresh = ({name: _empty_top(job.dims[name], job.topk) for name in job.layers}, {"done": 0, "skipped": []}, False)
    state_file = job.folder / "state.json"
    if not state_file.is_file():
        return fresh
    try:
        state = json.loads(state_file.read_text())
        tops = {}
        for name in job.layers:
            with np.load(job.folder / f"top-{_safe(name)}.partial.npz") as z:
                tops[name] = {k: z[k] for k in ("values", "rows", "positions")}
    except (OSError, ValueError, KeyError):
        return fresh
    return tops, state, True


def _store_batch(
    job: _Job,
    files: dict[str, _RowFile],
    reduced: Probe,
    tops: _Tops,
    x: torch.Tensor,
    idx: torch.Tensor,
    ok: np.ndarray,
) -> _Tops:
    """Write one batch's pooled features and pixels at its rows; return the top-k with the
    batch merged in (unreadable images never enter it)."""
    start, rows = int(idx[0]), idx.numpy()
    new_tops = {}
    for name in job.layers:
        pooled, mx, where = reduced[name]
        files[name].write(start, pooled.cpu().numpy())
        vals = mx.cpu().numpy().T.copy()
        vals[:, ~ok] = -np.inf
        if where is not None:
            w = job.shapes[name][2]
            wh = where.cpu().numpy().T
            pos = np.stack([wh // w, wh % w], -1)
        else:
            pos = np.full((*vals.shape, 2), -1, np.int64)
        new_tops[name] = _merged(tops[name], vals, np.broadcast_to(rows, vals.shape), pos)
    files[PIXELS].write(start, F.adaptive_avg_pool2d(x.float(), job.psize).flatten(1).cpu().numpy())
    return new_tops


def _run(job: _Job, progress: bool, on_batch: Callable[[int, int], None] | None) -> PassResult:
    from ..tracing import forward_until

    model, coll, n = job.model, job.coll, len(job.coll)
    job.folder.mkdir(parents=True, exist_ok=True)
    tops, state, resumed = _resume(job)
    files = {
        name: _RowFile(job.folder / (_feature_file(name) + ".partial"), n, dim, create=not resumed)
        for name, dim in job.dims.items()
    }
    loader = DataLoader(
        _Images(coll, model, state["done"]),
        batch_size=job.batch_size,
        num_workers=_workers(job.workers, coll, job.batch_size),
        pin_memory=model.device.type == "cuda",
        persistent_workers=False,
    )
    bar = Progress(f"features of {coll.name}", n, completed=state["done"], enabled=progress)
    last = time.monotonic()
    # (tops, state) after the last whole batch, replaced by ONE assignment so that an
    # interruption anywhere leaves a consistent pair to checkpoint
    ck = (tops, state)
    try:
        reducing = Probe(model.net, job.layers, reduce=lambda name, out: _reduce(job.to_map(name, out), job.pool))
        with reducing as reduced, torch.inference_mode():
            for x, idx, errors in loader:
                x = x.to(model.device, non_blocking=True)
                if job.predict:
                    p, c = model.net(x).float().softmax(1).max(1)
                    files[PREDICTIONS].write(int(idx[0]), torch.stack([c.float(), p], 1).cpu().numpy())
                else:
                    forward_until(model.net, x, job.deepest)
                ok = np.array([not e for e in errors])
                new_tops = _store_batch(job, files, reduced, ck[0], x, idx, ok)
                bad = [[int(i), coll.paths[int(i)], e] for i, e in zip(idx, errors, strict=True) if e]
                ck = (new_tops, {"done": int(idx[0]) + len(idx), "skipped": ck[1]["skipped"] + bad})
                bar.advance(len(idx))
                if time.monotonic() - last > _CHECKPOINT_SECONDS or ck[1]["done"] == n:
                    _checkpoint(job, *ck)
                    last = time.monotonic()
                if on_batch is not None:
                    on_batch(ck[1]["done"], n)
    except BaseException:
        # everything up to the last whole batch is consistent: keep it for the resume
        with contextlib.suppress(OSError):
            _checkpoint(job, *ck)
        raise
    finally:
        bar.close()
        for f in files.values():
            f.close()
    tops, state = ck
    return _finish(job, tops, state, list(files))


def _pooled_dim(shape: tuple[int, ...]) -> int:
    if len(shape) == 3:
        return shape[0]
    if len(shape) == 2:
        return shape[1]
    return int(np.prod(shape))


def _workers(workers: int | None, coll: Collection, batch_size: int) -> int:
    if workers is not None:
        return max(0, workers)
    if coll.arrays is not None or len(coll) <= 2 * batch_size:
        return 0  # in-memory or tiny: worker start-up costs more than it saves
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _finish(job: _Job, tops: _Tops, state: dict[str, Any], files: list[str]) -> PassResult:
    """Publish a complete pass: drop unreadable rows, write final top-k and index.json."""
    model, coll, layers, shapes, pool, folder = job.model, job.coll, job.layers, job.shapes, job.pool, job.folder
    bad = {i for i, _, _ in state["skipped"]}
    keep = np.array([i for i in range(len(coll)) if i not in bad], np.int64)
    if len(keep) == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise ArgumentError(f"{coll.name}: none of the {len(coll)} images could be read ({state['skipped'][0][2]})")
    remap = np.full(len(coll), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    for name in files:
        part = folder / (_feature_file(name) + ".partial")
        if len(keep) < len(coll):  # drop unreadable rows, block by block
            full = np.load(part, mmap_mode="r")
            rf = _RowFile(folder / (_feature_file(name) + ".compact"), len(keep), full.shape[1], create=True)
            for s in range(0, len(keep), 4096):
                rf.write(s, full[keep[s : s + 4096]])
            rf.close()
            del full
            part.unlink()
            part = folder / (_feature_file(name) + ".compact")
        os.replace(part, folder / _feature_file(name))
    for name in layers:
        t = tops[name]
        valid = np.isfinite(t["values"]) & (t["rows"] < len(coll))
        rows = np.where(valid, remap[np.minimum(t["rows"], len(coll) - 1)], -1)
        final = {
            "values": np.where(valid, t["values"], np.nan).astype(np.float32),
            "rows": rows,
            "positions": t["positions"],
        }
        _write_top(folder / f"top-{_safe(name)}.npz", final, len(shapes[name]) == 3)
        (folder / f"top-{_safe(name)}.partial.npz").unlink(missing_ok=True)
    _write_json(
        folder / "index.json",
        {
            "format": FORMAT,
            "model": model.name,
            "dataset": coll.name,
            "layers": layers,
            "shapes": {k: list(v) for k, v in shapes.items()},
            "pool": pool,
            "rows": keep.tolist(),
            "skipped": state["skipped"],
        },
    )
    (folder / "state.json").unlink(missing_ok=True)
    return _load_result(folder, coll, reused=False)


def _load_result(folder: Path, coll: Collection, reused: bool = True) -> PassResult:
    index = json.loads((folder / "index.json").read_text())
    result = PassResult(
        collection=coll.subset(index["rows"]) if len(index["rows"]) < len(coll) else coll,
        layers=list(index["layers"]),
        shapes={k: tuple(v) for k, v in index["shapes"].items()},
        pool=index["pool"],
        cache_dir=folder,
        skipped=[(p, e) for _, p, e in index["skipped"]],
        reused=reused,
    )
    for name in [*result.layers, PIXELS]:
        if not (folder / _feature_file(name)).is_file():
            raise OSError(f"missing {_feature_file(name)}")
    return result
