"""Benchmark the dataset pass and its views against the bare tools, in one run.

- extraction: run_pass vs a bare `torch.inference_mode()` forward loop over the same images,
  DataLoader and batch size (bundled EfficientNet-Lite0); throughput ratio.
- memory: peak RSS of a pass over 20,000 generated images vs 2,000 (each in its own process).
- knn: visionlens.knn vs FAISS's IndexFlatIP called directly, 100,000 x 1,280 features.
- tsne: visionlens embed(method="tsne") vs openTSNE called directly (same PCA-50 step), 10,000 points.
- approx: the approximate index (IVF-Flat, nprobe tuned to recall@10 >= 0.95) vs exact FAISS
  search on N x 1,280 synthetic clustered features (--approx-n, default 1,000,000): build time,
  recall@10 on 1,000 fresh queries, speed-up, memory.
- ray: the pass on Ray (local instance, 1 and 2 actors) vs the local pass vs a bare DataLoader
  loop, on generated images (--ray-n, default 10,000; --ray-size, the model's input size);
  Ray's start-up time apart.
- maps: building a t-SNE and a UMAP map (`embed`) of N x 1,280 clustered features for each N of
  --maps-n (default 100,000 and 1,000,000); above 100,000 points the map is fitted on a sample
  of 100,000 and the rest placed by `transform`. Each in its own process: time, peak RSS,
  trustworthiness; a run that passes --maps-timeout (default 600 s) is stopped and reported.

    python benchmarks/dataset.py [--only extraction,memory,knn,tsne,approx,ray,maps] [--threads N] [--repeats N]
        [--quick] [--maps-n 100000,1000000] [--maps-timeout 600]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def median_times(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """n smooth random JPEGs (a few classes of colour blobs), size x size, in class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        sub = folder / f"class{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{i:06d}.jpg"
        if path.exists():
            continue
        cx, cy, r = rng.random(3)
        base = np.stack(
            [np.sin(6 * xx + i % 5), np.cos(5 * yy), np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 + r / 5))], -1
        )
        img = np.clip((base * 0.5 + 0.5 + rng.normal(0, 0.05, base.shape)) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path, quality=90)
    return folder


def extraction(repeats: int, n: int, batch: int, workers: int) -> None:
    from torch.utils.data import DataLoader

    import visionlens as vl
    from visionlens.dataset import open_dataset, run_pass
    from visionlens.dataset.engine import _Images

    model = vl.load_model()
    tmp = Path(tempfile.mkdtemp(prefix="vl-bench-"))
    coll = open_dataset(make_images(tmp / "images", n, 256))

    def bare() -> None:
        loader = DataLoader(_Images(coll, model, 0), batch_size=batch, num_workers=workers)
        with torch.inference_mode():
            for x, _, _ in loader:
                model.net(x)

    counter = iter(range(10**6))

    def ours() -> None:  # a fresh cache each time, so every run does the whole pass
        run_pass(model, coll, ["bn2"], batch_size=batch, workers=workers, cache_dir=tmp / f"cache{next(counter)}")

    bare()  # warm-up (page cache, allocator)
    t_bare, t_ours = [], []
    for _ in range(repeats):  # interleaved, so drift hits both
        t_bare.append(median_times(bare, 1))
        t_ours.append(median_times(ours, 1))
    b, o = statistics.median(t_bare), statistics.median(t_ours)
    print(f"extraction, {n} images 256 px -> 224, batch {batch}, {workers} workers, medians of {repeats}:")
    print(
        f"  bare inference_mode loop {b:.2f} s ({n / b:.1f} img/s)   visionlens run_pass {o:.2f} s ({n / o:.1f} img/s)"
    )
    print(f"  visionlens throughput = {b / o:.1%} of the bare loop (target >= 90%)")


def _memory_child(n: int, folder: str) -> None:
    import resource

    import visionlens as vl
    from visionlens.dataset import run_pass

    model = vl.load_model("digits_cnn")
    res = run_pass(model, folder, ["features.relu3"], batch_size=64, workers=1, cache_dir=Path(folder).parent / f"c{n}")
    assert len(res.collection) == n
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(quick: bool) -> None:
    small, large = (200, 2000) if quick else (2000, 20000)
    tmp = Path(tempfile.mkdtemp(prefix="vl-mem-"))
    out = {}
    for n in (small, large):
        folder = make_images(tmp / f"d{n}", n, 32, seed=n)
        cmd = [sys.executable, __file__, "--memory-child", str(n), str(folder)]
        line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        out[n] = json.loads(line)["rss_mb"]
    print("memory, digits_cnn on generated 32-px images, peak RSS of the whole process:")
    print(
        f"  {small} images: {out[small]:.0f} MB   {large} images: {out[large]:.0f} MB   "
        f"difference {out[large] - out[small]:+.0f} MB (target <= +100 MB)"
    )


def knn_bench(repeats: int, n: int, dim: int, queries: int) -> None:
    import faiss

    from visionlens.dataset.views import knn

    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, dim), dtype=np.float32)
    q = base[rng.choice(n, queries, replace=False)] + rng.normal(0, 0.1, (queries, dim)).astype(np.float32)

    def direct():  # type: ignore[no-untyped-def]
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(dim)
        index.add(b)
        return index.search(q / np.linalg.norm(q, axis=1, keepdims=True), 10)

    direct()  # warm-up
    knn(base, q, 10, use_faiss=False)
    t_f = median_times(direct, repeats)
    t_v = median_times(lambda: knn(base, q, 10), repeats)
    t_t = median_times(lambda: knn(base, q, 10, use_faiss=False), max(1, repeats // 2))
    same = np.array_equal(direct()[1], knn(base, q, 10)[1])
    print(
        f"knn, {n} x {dim} features, {queries} queries, k=10, exact cosine, medians of {repeats} (incl. normalizing):"
    )
    print(
        f"  FAISS IndexFlatIP direct {queries / t_f:.0f} q/s   visionlens.knn {queries / t_v:.0f} q/s "
        f"({t_f / t_v:.2f}x)   torch fallback {queries / t_t:.0f} q/s   same neighbours: {same}"
    )


def tsne_bench(repeats: int, n: int) -> None:
    from openTSNE import TSNE
    from sklearn.datasets import make_blobs
    from sklearn.decomposition import PCA

    from visionlens.dataset.views import embed

    x, y = make_blobs(n, 256, centers=10, cluster_std=4.0, random_state=0)
    x = x.astype(np.float32)

    def direct():  # type: ignore[no-untyped-def]
        xr = PCA(50, random_state=0).fit_transform(x)
        return TSNE(perplexity=30, random_state=0, n_jobs=os.cpu_count() or 1).fit(xr)

    direct()  # warm-up: imports, numba compilation
    embed(x[:500], "tsne")
    t_d, t_v = [], []
    for _ in range(repeats):
        t_d.append(median_times(direct, 1))
        t_v.append(median_times(lambda: embed(x, "tsne", list(y)), 1))
    d, v = statistics.median(t_d), statistics.median(t_v)
    print(f"t-SNE, {n} points x 256 dims, medians of {repeats}:")
    print(
        f"  openTSNE direct {d:.1f} s   visionlens embed {v:.1f} s (incl. trustworthiness + 5-NN score) "
        f"overhead {v / d - 1:+.1%} (target <= 10%)"
    )


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n x d synthetic 'network features': clusters in a 64-dim latent space lifted through a
    random projection and a ReLU, plus noise (structure as real features have; uniform noise
    has no neighbours worth finding)."""
    rng = np.random.default_rng(seed)
    latent = 64
    proj = (rng.standard_normal((latent, d)) / np.sqrt(latent)).astype(np.float32)
    centres = rng.standard_normal((max(10, n // 1000), latent)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        z = centres[rng.integers(0, len(centres), m)] + 0.7 * rng.standard_normal((m, latent)).astype(np.float32)
        out[s : s + m] = np.maximum(z @ proj, 0) + 0.05 * rng.standard_normal((m, d)).astype(np.float32)
    return out


def approx_bench(n: int, dim: int, queries: int) -> None:
    import resource

    import faiss

    from visionlens.dataset.ann import build_index

    data = clustered(n + queries, dim)
    faiss.normalize_L2(data)  # in place: the exact baseline searches normalized rows, as the index does
    x, q = data[:n], data[n:]  # queries: new points of the same distribution, not rows of the index
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ix = build_index(x, k=10, target_recall=0.95)
    t = time.perf_counter()
    _, truth = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact brute force, no copy
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    _, found = ix.index.search(q, 10)
    t_ann = time.perf_counter() - t
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"approximate kNN, {n} x {dim} clustered features, {queries} fresh queries, k=10, "
        f"{faiss.omp_get_max_threads()} threads:"
    )
    print(f"  {ix.describe()}; built (train + add + tune) in {ix.build_seconds:.1f} s")
    print(
        f"  exact FAISS flat {queries / t_exact:.0f} q/s   approximate {queries / t_ann:.0f} q/s   "
        f"speed-up {t_exact / t_ann:.1f}x (target >= 10x)   recall@10 on fresh queries {recall:.3f} (target >= 0.95)"
    )
    print(
        f"  memory: features {x.nbytes / 2**20:.0f} MiB, index {ix.memory_bytes / 2**20:.0f} MiB; "
        f"peak RSS {rss:.0f} MiB ({rss0:.0f} MiB before the index)"
    )


def ray_bench(n: int, batch: int, size: int) -> None:
    import ray
    from torch.utils.data import DataLoader

    import visionlens as vl
    from visionlens.dataset import open_dataset, run_pass
    from visionlens.dataset.engine import _Images

    model = vl.load_model()
    if size != model.preprocessing.input_size:  # the same network at another input size
        pre = dataclasses.replace(model.preprocessing, input_size=size, resize=size * 8 // 7)
        model = dataclasses.replace(model, preprocessing=pre)
    tmp = Path(tempfile.mkdtemp(prefix="vl-ray-"))
    t = time.perf_counter()
    coll = open_dataset(make_images(tmp / "images", n, size * 8 // 7))
    print(f"  {n} images generated in {time.perf_counter() - t:.0f} s", flush=True)

    def bare() -> None:  # what a user writes: a DataLoader and a forward loop, nothing kept
        loader = DataLoader(_Images(coll, model, 0), batch_size=batch, num_workers=0)
        with torch.inference_mode():
            for x, _, _ in loader:
                model.net(x)

    t = time.perf_counter()
    bare()
    t_bare = time.perf_counter() - t
    t = time.perf_counter()
    run_pass(model, coll, ["bn2"], batch_size=batch, workers=1, cache_dir=tmp / "local")
    t_local = time.perf_counter() - t
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    times = {}
    try:
        for actors in (1, 2):
            t = time.perf_counter()
            run_pass(
                model, coll, ["bn2"], batch_size=batch, workers=actors, engine="ray", cache_dir=tmp / f"ray{actors}"
            )
            times[actors] = time.perf_counter() - t
    finally:
        ray.shutdown()
    print(
        f"Ray pass, {n} images {size * 8 // 7} px -> {size}, EfficientNet-Lite0, batch {batch}, {os.cpu_count()} CPUs:"
    )
    print(f"  bare DataLoader + inference_mode loop {t_bare:.0f} s, {n / t_bare:.1f} img/s")
    print(f"  local run_pass {t_local:.0f} s, {n / t_local:.1f} img/s = {t_bare / t_local:.0%} of the bare loop")
    print(f"  ray.init {t_init:.1f} s (paid once per process)")
    for actors, t_r in times.items():
        print(
            f"  Ray, {actors} actor(s): {t_r:.0f} s, {n / t_r:.1f} img/s = {t_bare / t_r:.0%} of the bare loop, "
            f"{t_local / t_r:.0%} of the local pass"
        )


def _maps_child(method: str, n: int, dim: int) -> None:
    import resource

    from visionlens.dataset.views import embed

    x = clustered(n, dim)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    emb = embed(x, method)
    took = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"seconds": took, "rss_mb": rss, "rss_before_mb": rss0, "params": emb.params, "trust": emb.trustworthiness}
    print(json.dumps(out))


def maps_bench(sizes: list[int], dim: int, timeout: float) -> None:
    print(f"maps (embed), N x {dim} clustered features, {os.cpu_count()} CPUs, each in its own process:")
    for n in sizes:
        for method in ("tsne", "umap"):
            cmd = [sys.executable, __file__, "--maps-child", method, str(n), str(dim)]
            t = time.perf_counter()
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"  {method} {n:,} points: did not finish within {timeout:.0f} s (stopped)")
                continue
            if run.returncode != 0:
                print(f"  {method} {n:,} points: failed: {run.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"  {method} {n:,} points: {r['seconds']:.0f} s (process {time.perf_counter() - t:.0f} s)   "
                f"peak RSS {r['rss_mb']:.0f} MiB (features alone {n * dim * 4 / 2**20:.0f} MiB)   "
                f"trustworthiness {r['trust']:.3f}\n    {r['params']}"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="extraction,memory,knn,tsne,approx,ray,maps")
    ap.add_argument("--maps-n", default="100000,1000000", help="map sizes of the maps benchmark, comma-separated")
    ap.add_argument("--maps-dim", type=int, default=1280, help="feature dimensions of the maps benchmark")
    ap.add_argument("--maps-timeout", type=float, default=600, help="seconds one map may take before it is stopped")
    ap.add_argument("--maps-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--approx-n", type=int, default=1_000_000, help="rows of the approximate-kNN benchmark")
    ap.add_argument("--ray-n", type=int, default=10_000, help="images of the Ray benchmark")
    ap.add_argument("--ray-size", type=int, default=224, help="model input size of the Ray benchmark, px")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.memory_child:
        _memory_child(int(a.memory_child[0]), a.memory_child[1])
        return
    if a.maps_child:
        _maps_child(a.maps_child[0], int(a.maps_child[1]), int(a.maps_child[2]))
        return
    only = set(a.only.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    if "extraction" in only:
        extraction(a.repeats, 64 if a.quick else 512, 32, 1)
    if "memory" in only:
        memory(a.quick)
    if "knn" in only:
        knn_bench(a.repeats, 10_000 if a.quick else 100_000, 1280, 100 if a.quick else 1000)
    if "tsne" in only:
        tsne_bench(a.repeats, 1000 if a.quick else 10_000)
    if "approx" in only:
        approx_bench(20_000 if a.quick else a.approx_n, 1280, 1000)
    if "ray" in only:
        ray_bench(64 if a.quick else a.ray_n, 32, a.ray_size)
    if "maps" in only:
        sizes = [2000, 20000] if a.quick else [int(v) for v in a.maps_n.split(",")]
        maps_bench(sizes, a.maps_dim, a.maps_timeout)


if __name__ == "__main__":
    main()
