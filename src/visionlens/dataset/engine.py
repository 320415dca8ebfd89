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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from ..errors import ArgumentError, ImageError, VisionlensError
from ..io import fingerprint, model_fingerprint
from ..models import Model, as_model
from ..probe import Probe, resolve_layer
from ..progress import Progress
from .cache import Slot
from .passcore import (
    FORMAT,
    PIXELS,
    PREDICTIONS,
    CacheError,
    _checkpoint,
    _commit_batch,
    _complete_files,
    _feature_file,
    _finish,
    _Job,
    _reduce,
    _reduce_numpy,
    _resume,
    _RowFile,
    _safe,
)
from .sources import Changes, Collection, DatasetError, changes, open_dataset

_CHECKPOINT_SECONDS = 2.0


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
    engine: str = "local",
    address: str | None = None,
) -> PassResult:
    """Stream `dataset` through `model` once and store, for each layer, pooled features and a
    per-unit top-k. Returns at once when a finished cache for exactly this work exists; an
    interrupted pass resumes from its last checkpoint. Unreadable images are skipped and
    listed in `PassResult.skipped`. Any number of processes may run it on one cache folder at
    once: one computes, the others wait for its result (see `visionlens.dataset.cache`).

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
        engine: "local" (this process, a DataLoader reading images) or "ray" (Ray Data reads
            the image list, an actor pool runs the model; needs the `ray` extra). Both write
            the same cache.
        address: the Ray cluster to join (`ray start --head` prints it; "auto": the one
            running here); None: a Ray instance in this process. Ray engine only.

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

    if engine not in ("local", "ray"):
        raise ArgumentError(f"`engine` must be local or ray, not {engine!r}")
    if address is not None and engine != "ray":
        raise ArgumentError("`address` is for the Ray engine: give `engine` ray too")
    if engine == "ray":  # before any work: Ray installed, the cluster reachable
        from .ray_engine import check_address

        check_address(address)

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def job_in(work: Path) -> _Job:
        return _Job(model, coll, layers, pool, topk, batch_size, workers, work, predict)

    def compute(job: _Job) -> None:
        if engine == "ray":
            from .ray_engine import run_on_ray

            run_on_ray(job, address, progress, on_batch, _CHECKPOINT_SECONDS)
        else:
            _run(job, progress, on_batch)

    try:
        for attempt in (1, 2):
            slot = Slot(root, cache_key(model, coll, layers, pool, topk, predict))
            try:
                return _cached(slot, coll, job_in, compute, progress, verify=_unchanged)
            except _Changed as e:  # nothing of it was cached: read the dataset again as it is now
                if attempt == 2:
                    raise DatasetError(
                        f"{coll.name} changed during the pass ({e.changes}), and again while it was read a second "
                        "time; nothing was cached: run again once it stops changing"
                    ) from None
                print(
                    f"{coll.name} changed during the pass ({e.changes}): nothing of that pass was cached; "
                    f"reading its {len(e.changes.now)} images again as they are now",
                    file=sys.stderr,
                    flush=True,
                )
                coll = e.changes.now
        raise AssertionError("unreachable")
    except OSError as e:
        if isinstance(e, NotADirectoryError | FileExistsError) and not root.is_dir():
            reason = "is not a folder"
        else:
            reason = e.strerror or str(e)
        raise CacheError(
            f"cannot write the feature cache in {root}: {reason}; free some space or choose "
            "another folder with `cache_dir` (finished caches are left intact)"
        ) from None


class _Changed(Exception):
    """The listed files of the dataset changed while the pass read them."""

    def __init__(self, changes: Changes) -> None:
        super().__init__(str(changes))
        self.changes = changes


def _unchanged(coll: Collection) -> None:
    """Before a pass is published: raise `_Changed` when listed files were removed or rewritten
    while it ran (its rows would mix old and new contents under the old key); files only
    added leave the result whole for what was listed: one line says so."""
    found = changes(coll)
    if found is None:
        return
    if found.removed or found.changed:
        raise _Changed(found)
    print(
        f"{coll.name}: {found.added} image(s) were added during the pass; this result covers the {len(coll)} "
        "listed when it started: run again to include them",
        file=sys.stderr,
        flush=True,
    )


def _cached(
    slot: Slot,
    coll: Collection,
    job_in: Callable[[Path], _Job],
    compute: Callable[[_Job], None],
    progress: bool,
    verify: Callable[[Collection], None] | None = None,
) -> PassResult:
    """The finished entry of `slot`, computed here (in a folder of our own, then published by
    one rename) unless another process publishes it first or is computing it now (we wait).
    `verify(coll)` runs after the computation, before the publication; what it raises
    discards the computed folder."""
    job: _Job | None = None
    while True:
        if slot.finished():
            try:
                return _load_result(slot.final, coll)
            except (OSError, ValueError, KeyError):
                slot.discard_final()  # an unreadable finished cache is rebuilt
        if job is None:  # layers are checked (a dry run) before anything is locked
            job = job_in(slot.final)
        work = slot.acquire((lambda line: print(line, file=sys.stderr, flush=True)) if progress else None)
        if work is None:
            continue  # published by another process while we waited
        job.folder = work
        try:
            with slot.heartbeat(work):
                if (work / "index.json").is_file():  # adopted a finished, unpublished folder
                    _complete_files(work)
                else:
                    compute(job)
        except VisionlensError:
            slot.release(work, keep=False)  # bad input: nothing worth resuming
            raise
        except BaseException:
            slot.release(work)  # the checkpoint stays for the next run
            raise
        if verify is not None:
            try:
                verify(coll)
            except BaseException:
                slot.release(work, keep=False)  # never published, never resumed
                raise
        _tidy(work)
        won = slot.publish(work)
        return _load_result(slot.final, coll, reused=not won)


def _tidy(work: Path) -> None:
    """Remove what a finished entry does not need: checkpoints, and temporary files left by a
    process killed mid-write in a folder adopted since."""
    for p in work.iterdir():
        final = p.name == "index.json" or (p.suffix in (".npy", ".npz") and not p.name.endswith(".partial.npz"))
        if p.name.startswith(".") or not final:
            p.unlink()


def _run(job: _Job, progress: bool, on_batch: Callable[[int, int], None] | None) -> None:
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
                pixels = F.adaptive_avg_pool2d(x.float(), job.psize).flatten(1).cpu().numpy()
                reduced_np = _reduce_numpy(job, reduced)
                ck = _commit_batch(job, files, reduced_np, ck, int(idx[0]), list(errors), pixels, coll.paths)
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
    _finish(job, tops, state, list(files))


def _workers(workers: int | None, coll: Collection, batch_size: int) -> int:
    if workers is not None:
        return max(0, workers)
    if coll.arrays is not None or len(coll) <= 2 * batch_size:
        return 0  # in-memory or tiny: worker start-up costs more than it saves
    return max(1, min(4, (os.cpu_count() or 2) - 1))


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
