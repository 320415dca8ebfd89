"""Approximate nearest neighbours for large passes: a FAISS inverted-file index (IVF-Flat on
normalized features, inner product = cosine), its coarse quantizer trained on a sample, and
its `nprobe` chosen as the smallest that reaches a target recall@k against exact search on
held-out queries. The recall it measured travels with the index, so every answer can say how
approximate it is.

Exact search costs N x D per query; IVF-Flat scans about nprobe / nlist of the rows. Its
memory is the rows themselves (N x D x 4 bytes) plus 8 bytes per row and the centroids.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArgumentError
from ..io import atomic_file

APPROX_MIN_ROWS = 200_000
"""From this many rows on, `neighbors` searches an approximate index unless told otherwise
(below it, exact search of a few queries is already fast).

Example:
    >>> from visionlens.dataset.ann import APPROX_MIN_ROWS
    >>> APPROX_MIN_ROWS
    200000
"""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ArgumentError("approximate neighbours need FAISS: pip install faiss-cpu") from None
    return faiss


def _normalized_block(a: np.ndarray) -> np.ndarray:
    x = np.array(a, dtype=np.float32, order="C", copy=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


@dataclass
class ApproxIndex:
    """An IVF-Flat index over normalized rows and what it was measured to achieve.

    Attributes:
        index: the `faiss.IndexIVFFlat` (inner product on normalized rows).
        nlist: inverted lists (coarse clusters).
        nprobe: lists scanned per query (set on `index`).
        k: the k of the recall measurement.
        recall: recall@k against exact search on `holdout` held-out rows used as queries.
        holdout: how many queries measured it.
        build_seconds: training, adding and tuning time.

    Example:
        >>> from visionlens.dataset.ann import build_index
        >>> rng = np.random.default_rng(0)
        >>> centres = rng.standard_normal((50, 32))
        >>> x = (centres[rng.integers(0, 50, 20000)] + 0.3 * rng.standard_normal((20000, 32))).astype(np.float32)
        >>> ix = build_index(x, k=10)
        >>> ix.recall >= 0.95
        True
    """

    index: Any
    nlist: int
    nprobe: int
    k: int
    recall: float
    holdout: int
    build_seconds: float

    @property
    def memory_bytes(self) -> int:
        """Bytes the index holds: the rows, their ids and the centroids."""
        n, d = int(self.index.ntotal), int(self.index.d)
        return n * (4 * d + 8) + self.nlist * 4 * d

    def describe(self) -> str:
        """One line: the index, its nprobe and its measured recall."""
        return (
            f"approximate: FAISS IVF{self.nlist},Flat, nprobe {self.nprobe}, recall@{self.k} {self.recall:.3f} "
            f"on {self.holdout} held-out queries"
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities, row indices), each (Q, k), best first; -1 rows past the
        candidates found (never with a tuned index and k well below N)."""
        sims, idx = self.index.search(_normalized_block(queries), k)
        return sims, idx


def _exact(base: np.ndarray, q: np.ndarray, k: int, block: int = 65536) -> np.ndarray:
    """Exact top-k rows by inner product, streaming `base` in blocks (a memmap stays on disk)."""
    faiss = _faiss()
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for s in range(0, len(base), block):
        flat = faiss.IndexFlatIP(base.shape[1])
        flat.add(_normalized_block(base[s : s + block]))
        sims, idx = flat.search(q, min(k, flat.ntotal))
        allv, alli = np.concatenate([best_s, sims], 1), np.concatenate([best_i, idx + s], 1)
        order = np.argsort(-allv, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(allv, order, 1), np.take_along_axis(alli, order, 1)
    return best_i


def _recall(found: np.ndarray, truth: np.ndarray, self_rows: np.ndarray, k: int) -> float:
    hits = 0
    for f, t, r in zip(found, truth, self_rows, strict=True):
        f_k = [i for i in f if i != r][:k]
        t_k = [i for i in t if i != r][:k]
        hits += len(set(f_k) & set(t_k))
    return hits / (k * len(truth))


def build_index(
    base: np.ndarray,
    k: int = 10,
    target_recall: float = 0.95,
    nlist: int | None = None,
    holdout: int = 200,
    seed: int = 0,
) -> ApproxIndex:
    """Build an IVF-Flat index over the rows of `base` (cosine), trained on a sample, with
    `nprobe` raised (1, 2, 4, ...) until recall@k against exact search on `holdout` rows used
    as queries (each left out of its own answers) reaches `target_recall`.

    Args:
        base: (N, D) feature rows (a memory-mapped array is read in blocks).
        k: the k of the recall that is measured and targeted.
        target_recall: the recall@k to reach, in (0, 1].
        nlist: inverted lists (default: about sqrt(N), at least 16).
        holdout: rows used as queries to measure recall.
        seed: seed of the training sample and the held-out rows.

    Returns:
        An `ApproxIndex` with its measured recall.

    Example:
        >>> from visionlens.dataset.ann import build_index
        >>> x = np.random.default_rng(0).standard_normal((5000, 16)).astype(np.float32)
        >>> build_index(x, k=5, nlist=16).nprobe <= 16
        True
    """
    faiss = _faiss()
    n, d = base.shape
    if not 0 < target_recall <= 1:
        raise ArgumentError(f"`target_recall` must be in (0, 1], not {target_recall}")
    if n < 4 * (k + 1):
        raise ArgumentError(f"an approximate index needs at least {4 * (k + 1)} rows; the features have {n}")
    t0 = time.perf_counter()
    nlist = nlist or max(16, min(65536, 2 ** round(math.log2(math.sqrt(n)))))
    nlist = min(nlist, n // 4)
    rng = np.random.default_rng(seed)
    train_rows = np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(_normalized_block(base[train_rows]))
    for s in range(0, n, 65536):
        index.add(_normalized_block(base[s : s + 65536]))
    held = np.sort(rng.choice(n, min(holdout, n), replace=False))
    q = _normalized_block(base[held])
    truth = _exact(base, q, k + 1)
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        _, found = index.search(q, k + 1)
        recall = _recall(found, truth, held, k)
        if recall >= target_recall or nprobe >= nlist:
            break
        nprobe = min(nlist, nprobe * 2)
    return ApproxIndex(index, nlist, nprobe, k, recall, len(held), time.perf_counter() - t0)


def cached_index(base: np.ndarray, folder: Path, name: str, k: int = 10, target_recall: float = 0.95) -> ApproxIndex:
    """The index of `base` saved in `folder` as `index-NAME.faiss` (with its measurements in
    a .json beside it), built and saved atomically when missing or made for other rows.

    Args:
        base: (N, D) feature rows.
        folder: where to keep the index (a pass's cache entry).
        name: a file-name-safe name for these rows (the layer).
        k: the k of the recall measurement.
        target_recall: the recall@k to reach.

    Returns:
        The `ApproxIndex`, read or built.

    Example:
        >>> from visionlens.dataset.ann import cached_index
        >>> x = np.random.default_rng(0).standard_normal((5000, 16)).astype(np.float32)
        >>> cached_index(x, Path(tempfile.mkdtemp()), "demo", k=5).index.ntotal
        5000
    """
    faiss = _faiss()
    path, meta_path = folder / f"index-{name}.faiss", folder / f"index-{name}.json"
    want = {"n": int(base.shape[0]), "d": int(base.shape[1]), "k": k, "target": target_recall}
    try:
        meta = json.loads(meta_path.read_text())
        if {key: meta[key] for key in want} == want:
            index = faiss.read_index(str(path))
            index.nprobe = meta["nprobe"]
            return ApproxIndex(index, meta["nlist"], meta["nprobe"], k, meta["recall"], meta["holdout"], 0.0)
    except (OSError, ValueError, KeyError, RuntimeError):
        pass  # missing, or for other rows: build it
    ix = build_index(base, k=k, target_recall=target_recall)
    with atomic_file(path) as f:
        f.write(faiss.serialize_index(ix.index).tobytes())
    meta = {**want, "nlist": ix.nlist, "nprobe": ix.nprobe, "recall": ix.recall, "holdout": ix.holdout}
    with atomic_file(meta_path, "w") as f:
        json.dump(meta, f)
    return ix


__all__ = ["APPROX_MIN_ROWS", "ApproxIndex", "build_index", "cached_index"]
