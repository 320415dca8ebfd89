"""The pieces of the dataset pass that every engine shares (the local DataLoader loop in
`engine`, the Ray actor pool in `ray_engine`): what a pass computes (`_Job`), how a batch is
reduced and stored (row files written in place, a running top-k per unit), and how a work
folder is checkpointed, resumed and finished, so that both engines write the same cache.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ArgumentError, VisionlensError
from ..io import atomic_file
from ..layermaps import MapLayout
from ..layers import dry_run, layer_layouts
from ..models import Model
from ..probe import Probe
from .sources import Collection

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


def _safe(layer: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in layer)


def _feature_file(layer: str) -> str:
    return f"features-{_safe(layer)}.npy"


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
    Order: value descending, then row ascending.

    Idempotent: entries of the batch's rows already in the top-k are dropped first. A
    checkpoint writes one top-k file per layer, then the progress; a kill between the two
    leaves top-k files ahead of the progress, and the resumed pass merges those batches
    again. The result is still the clean run's: the old top-k without the batch's rows, with
    the batch added back, holds the top-k of everything seen and nothing else."""
    k = state["values"].shape[1]
    stale = (state["rows"] >= rows.min()) & (state["rows"] <= rows.max()) if rows.size else state["rows"] < 0
    v = np.concatenate([np.where(stale, -np.inf, state["values"]).astype(np.float32), vals], axis=1)
    r = np.concatenate([np.where(stale, np.iinfo(np.int64).max, state["rows"]), rows], axis=1)
    p = np.concatenate([np.where(stale[..., None], -1, state["positions"]), pos], axis=1)
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
    """An .npz like np.savez's, but with fixed zip timestamps: the same top-k gives the same
    bytes whenever it is written (a resumed pass ends byte-identical)."""
    arrays = {"spatial": np.array(spatial), **{k: state[k] for k in ("values", "rows", "positions")}}
    with atomic_file(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            with z.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w") as member:
                np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)


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

    def __getstate__(self) -> dict[str, Any]:
        """What a Ray actor receives: the network on the CPU. torch restores a pickled tensor
        on the device it was saved from, and an actor may have no GPU, or see its own as
        cuda:0; the actor moves the network to its device. The copy goes through bytes, so the
        driver's GPU never holds the network twice."""
        state = dict(self.__dict__)
        net = self.model.net
        if any(t.device.type != "cpu" for t in (*net.parameters(), *net.buffers())):
            buf = io.BytesIO()
            torch.save(net, buf)
            buf.seek(0)
            state["model"] = replace(self.model, net=torch.load(buf, map_location="cpu", weights_only=False))
        return state

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
    if not all((job.folder / (_feature_file(name) + ".partial")).is_file() for name in job.dims):
        return fresh  # stopped while finishing: some row files were already moved
    try:
        state = json.loads(state_file.read_text())
        tops = {}
        for name in job.layers:
            with np.load(job.folder / f"top-{_safe(name)}.partial.npz") as z:
                tops[name] = {k: z[k] for k in ("values", "rows", "positions")}
    except (OSError, ValueError, KeyError):
        return fresh
    return tops, state, True


_Reduced = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # pooled, max, flat argmax


def _store_batch(job: _Job, files: dict[str, _RowFile], reduced: _Reduced, tops: _Tops, start: int,
                 ok: np.ndarray, pixels: np.ndarray) -> _Tops:  # fmt: skip
    """Write one batch's pooled features and pixels at its rows (from `start` on); return the
    top-k with the batch merged in (unreadable images never enter it). Both engines call it."""
    rows = np.arange(start, start + len(ok), dtype=np.int64)
    new_tops = {}
    for name in job.layers:
        pooled, mx, where = reduced[name]
        files[name].write(start, pooled)
        vals = np.array(mx, np.float32).T  # (C, B), a copy
        vals[:, ~ok] = -np.inf
        if where is not None:
            w = job.shapes[name][2]
            wh = np.asarray(where).T
            pos = np.stack([wh // w, wh % w], -1)
        else:
            pos = np.full((*vals.shape, 2), -1, np.int64)
        new_tops[name] = _merged(tops[name], vals, np.broadcast_to(rows, vals.shape), pos)
    files[PIXELS].write(start, pixels)
    return new_tops


_State = tuple[_Tops, dict[str, Any]]  # (top-k, {"done", "skipped"}): what a checkpoint writes


def _commit_batch(job: _Job, files: dict[str, _RowFile], reduced: _Reduced, ck: _State, start: int,
                  errors: list[str], pixels: np.ndarray, paths: list[str]) -> _State:  # fmt: skip
    """Store one batch (rows `start` on; `errors` says which images could not be read) and
    return the new (tops, state) pair that a checkpoint writes. Both engines call it."""
    ok = np.array([not e for e in errors])
    new_tops = _store_batch(job, files, reduced, ck[0], start, ok, pixels)
    bad = [[start + i, paths[start + i], e] for i, e in enumerate(errors) if e]
    return new_tops, {"done": start + len(errors), "skipped": ck[1]["skipped"] + bad}


def _reduce_numpy(job: _Job, reduced: Probe | dict[str, Any]) -> _Reduced:
    out: _Reduced = {}
    for name in job.layers:
        pooled, mx, where = reduced[name]
        out[name] = (pooled.cpu().numpy(), mx.cpu().numpy(), None if where is None else where.cpu().numpy())
    return out


def _pooled_dim(shape: tuple[int, ...]) -> int:
    if len(shape) == 3:
        return shape[0]
    if len(shape) == 2:
        return shape[1]
    return int(np.prod(shape))


def _finish(job: _Job, tops: _Tops, state: dict[str, Any], files: list[str]) -> None:
    """Complete a pass in its work folder: drop unreadable rows (into .compact files), write
    the final top-k, then index.json, then move the row files to their final names. Until
    index.json exists the checkpoint is intact (a kill resumes and finishes again); after it,
    `_complete_files` finishes the moves (a kill between them is completed by the next run)."""
    model, coll, layers, shapes, pool, folder = job.model, job.coll, job.layers, job.shapes, job.pool, job.folder
    bad = {i for i, _, _ in state["skipped"]}
    keep = np.array([i for i in range(len(coll)) if i not in bad], np.int64)
    if len(keep) == 0:
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
    _complete_files(folder)


def _complete_files(folder: Path) -> None:
    """In a work folder holding index.json: give each row file its final name (the compacted
    one when rows were dropped), idempotently, and drop the checkpoint."""
    for part in folder.glob("features-*.npy.partial"):
        final = folder / part.name.removesuffix(".partial")
        compact = folder / (final.name + ".compact")
        if not final.exists():
            os.replace(compact if compact.exists() else part, final)
        part.unlink(missing_ok=True)
        compact.unlink(missing_ok=True)
    for p in [*folder.glob("top-*.partial.npz"), folder / "state.json"]:
        p.unlink(missing_ok=True)
