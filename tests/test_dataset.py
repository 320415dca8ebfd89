"""The dataset pass and its views: digits_cnn, neighbours, maps, top patches, cache, resume."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visionlens as vl
from visionlens.dataset import CacheError, DatasetError, open_dataset, run_pass
from visionlens.dataset.views import embed, grid_assignment, knn, neighbors, top_patches
from visionlens.digits import accuracy, digits_split, load_digits_cnn
from visionlens.errors import ArgumentError, LayerError, VisionlensError

DIGITS_LAYER = "features.relu3"


@pytest.fixture(scope="module")
def digits_model() -> vl.Model:
    return load_digits_cnn()


@pytest.fixture(scope="module")
def digits_pass(digits_model: vl.Model, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return run_pass(digits_model, "digits", [DIGITS_LAYER], cache_dir=tmp_path_factory.mktemp("cache"))


def _folder(root: Path, n: int = 6, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / ("stripes" if i % 2 else "blobs")
        sub.mkdir(parents=True, exist_ok=True)
        a = (rng.random((size + 3 * i, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(sub / f"img{i}.png")
    return root


def test_committed_digits_cnn_reaches_97_percent(digits_model: vl.Model) -> None:
    _, held_out = digits_split()
    assert accuracy(digits_model, held_out) >= 0.97
    assert (Path(vl.__file__).parent / "data" / "digits_cnn.pt").stat().st_size < 1_000_000


def test_feature_neighbours_share_labels_pixels_less(digits_model: vl.Model, digits_pass) -> None:  # type: ignore[no-untyped-def]
    labels = np.asarray(digits_pass.collection.labels)
    _, held_out = digits_split()
    feats = digits_pass.features(DIGITS_LAYER)
    pix = digits_pass.pixels()
    _, fi = knn(feats, np.asarray(feats[held_out]), 5, held_out)
    _, pi = knn(pix, np.asarray(pix[held_out]), 5, held_out)
    f_agree = (labels[fi] == labels[held_out, None]).mean()
    p_agree = (labels[pi] == labels[held_out, None]).mean()
    assert f_agree >= 0.95
    # digits are easy in pixel space too (about 97%): pixels must still err clearly more often
    assert (1 - p_agree) >= 3 * (1 - f_agree) and p_agree < f_agree
    assert not (fi == held_out[:, None]).any()  # a query is never its own neighbour
    nb = neighbors(digits_model, digits_pass, DIGITS_LAYER, k=5, queries=[0, 1, 2])
    assert nb.feature.shape == (3, 5) and nb.pixel.shape == (3, 5)
    assert np.all(np.diff(nb.feature_dist, axis=1) >= -1e-6)


def test_knn_faiss_equals_torch_fallback() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 32)).astype(np.float32)
    q = rng.standard_normal((7, 32)).astype(np.float32)
    d1, i1 = knn(base, q, 10)
    d2, i2 = knn(base, q, 10, use_faiss=False)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-5)
    brute = 1 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (base / np.linalg.norm(base, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(i1, np.argsort(brute, axis=1)[:, :10])
    with pytest.raises(ArgumentError, match="only"):
        knn(base[:5], q, 5, exclude=[0] * 7)


@pytest.mark.slow
def test_tsne_map_is_trustworthy(digits_pass) -> None:  # type: ignore[no-untyped-def]
    emb = embed(np.asarray(digits_pass.features(DIGITS_LAYER)), "tsne", digits_pass.collection.labels)
    assert emb.coords.shape == (1797, 2)
    assert emb.trustworthiness >= 0.9
    assert emb.knn_accuracy is not None and emb.knn_accuracy >= 0.9


@pytest.mark.slow
def test_pca_and_umap_maps(digits_pass) -> None:  # type: ignore[no-untyped-def]
    x = np.asarray(digits_pass.features(DIGITS_LAYER))[:400]
    labels = digits_pass.collection.labels[:400]
    pca = embed(x, "pca", labels)
    assert pca.explained is not None and 0 < pca.explained[1] <= pca.explained[0] < 1
    um = embed(x, "umap", labels)
    assert um.coords.shape == (400, 2) and um.trustworthiness > 0.8


def test_grid_assignment_is_one_to_one() -> None:
    coords = np.random.default_rng(0).standard_normal((50, 2))
    cells, rows, cols = grid_assignment(coords)
    assert rows * cols >= 50
    assert len({(int(r), int(c)) for r, c in cells}) == 50
    # the left-most point lands in the left half of the grid
    assert cells[np.argmin(coords[:, 0]), 1] < cols / 2


def _brute_top(model: vl.Model, coll, layer: str, k: int):  # type: ignore[no-untyped-def]
    x = torch.stack([model.preprocessing(coll.read(i)) for i in range(len(coll))])
    acts = vl.activations(model, x, layer)  # (N, C, H, W)
    flat = acts.flatten(2)
    mx = flat.max(2).values.numpy()  # (N, C)
    order = np.stack([np.lexsort((np.arange(len(coll)), -mx[:, c])) for c in range(mx.shape[1])])[:, :k]
    return acts, order


def test_top_patches_match_brute_force(bundled: vl.Model, tmp_path: Path) -> None:
    layer = "blocks.3"
    res = run_pass(bundled, "samples", [layer], topk=5, batch_size=4, cache_dir=tmp_path)
    acts, order = _brute_top(bundled, res.collection, layer, 5)
    top = res.top(layer)
    np.testing.assert_array_equal(top.rows, order)
    a = acts.numpy()
    n_ch, h, w = a.shape[1:]
    ys, xs = top.positions[..., 0], top.positions[..., 1]  # (C, 5) each
    assert ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).all()
    chan = np.arange(n_ch)[:, None]
    again = a[top.rows, chan, ys, xs]  # the activation at each recorded position, every channel
    np.testing.assert_allclose(again, top.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(again, a.max((2, 3))[top.rows, chan], rtol=1e-4, atol=1e-5)  # the map's maximum
    patches = top_patches(bundled, res, layer, [0, 5], k=3)
    rf = vl.receptive_fields(bundled.net, 224, [layer])[layer]
    assert sorted(patches) == [0, 5]
    for u, plist in patches.items():
        assert [p.row for p in plist] == list(top.rows[u, :3])
        for p in plist:
            t, b = rf.span(p.position[0], 0)
            assert p.box[0] == max(0, t) and p.box[2] == min(224, b)
            assert p.image.shape[:2] == rf.size
            view = np.asarray(p.image[p.box[0] - t : p.box[2] - t])
            assert view.shape[0] == p.box[2] - p.box[0]


def test_top_patches_ties_and_small_net(digits_model: vl.Model, tmp_path: Path) -> None:
    coll = open_dataset("digits").subset(range(150))
    res = run_pass(digits_model, coll, ["features.relu1"], topk=8, batch_size=32, cache_dir=tmp_path)
    _, order = _brute_top(digits_model, coll, "features.relu1", 8)
    np.testing.assert_array_equal(res.top("features.relu1").rows, order)


def test_resume_after_interruption_equals_uninterrupted(digits_model: vl.Model, tmp_path: Path) -> None:
    coll = open_dataset("digits").subset(range(640))
    layers = ["features.relu2", DIGITS_LAYER]
    whole = run_pass(digits_model, coll, layers, batch_size=64, cache_dir=tmp_path / "a")

    def stop(done: int, total: int) -> None:
        if done >= 4 * 64:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pass(digits_model, coll, layers, batch_size=64, cache_dir=tmp_path / "b", on_batch=stop)
    (state,) = (tmp_path / "b").glob("*/state.json")
    assert json.loads(state.read_text())["done"] == 4 * 64
    seen = []
    resumed = run_pass(
        digits_model, coll, layers, batch_size=64, cache_dir=tmp_path / "b", on_batch=lambda d, t: seen.append(d)
    )
    assert seen[0] == 5 * 64  # started after the checkpoint, not from scratch
    for name in [*layers, "pixels"]:
        np.testing.assert_array_equal(resumed.features(name), whole.features(name), err_msg=name)
    for name in layers:
        a, b = whole.top(name), resumed.top(name)
        for part in ("values", "rows", "positions"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part), err_msg=f"{name} top {part}")


def test_cache_reused_only_for_the_same_work(digits_model: vl.Model, tmp_path: Path) -> None:
    coll = open_dataset("digits").subset(range(100))
    first = run_pass(digits_model, coll, [DIGITS_LAYER], cache_dir=tmp_path)
    again = run_pass(digits_model, coll, [DIGITS_LAYER], cache_dir=tmp_path)
    assert not first.reused and again.reused and again.cache_dir == first.cache_dir
    other_layer = run_pass(digits_model, coll, ["features.relu2"], cache_dir=tmp_path)
    assert other_layer.cache_dir != first.cache_dir and not other_layer.reused
    changed = load_digits_cnn()
    with torch.no_grad():
        changed.net.features.conv1.weight[0, 0, 0, 0] += 1.0
    other_model = run_pass(changed, coll, [DIGITS_LAYER], cache_dir=tmp_path)
    assert other_model.cache_dir != first.cache_dir and not other_model.reused
    assert not np.array_equal(np.asarray(other_model.features(DIGITS_LAYER)), np.asarray(first.features(DIGITS_LAYER)))


def test_unreadable_images_are_skipped_and_listed(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    (root / "blobs" / "broken.png").write_bytes(b"not a png at all")
    (root / "stripes" / "empty.jpg").write_bytes(b"")
    net = load_digits_cnn()
    res = run_pass(net, root, [DIGITS_LAYER], batch_size=3, cache_dir=tmp_path / "cache")
    assert len(res.collection) == 6
    assert sorted(Path(p).name for p, _ in res.skipped) == ["broken.png", "empty.jpg"]
    assert res.features(DIGITS_LAYER).shape == (6, 128)
    assert res.collection.classes == ["blobs", "stripes"]
    assert all(0 <= r < 6 for r in res.top(DIGITS_LAYER).rows[:, :6].ravel())


def test_mixed_modes_sizes_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((30, 50)) * 255).astype(np.uint8), "L").save(root / "gray.png")
    Image.fromarray((rng.random((64, 20, 4)) * 255).astype(np.uint8), "RGBA").save(root / "alpha.png")
    Image.fromarray((rng.random((40, 40)) * 65535).astype(np.uint16)).save(root / "deep.png")
    Image.fromarray((rng.random((25, 33, 3)) * 255).astype(np.uint8)).convert("P").save(root / "palette.png")
    (root / "copy.png").write_bytes((root / "gray.png").read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text("mixed/gray.png\nmixed/alpha.png\nmixed/gray.png\n\nmixed/copy.png\n")
    net = load_digits_cnn()
    res = run_pass(net, root, [DIGITS_LAYER], cache_dir=tmp_path / "c")
    assert len(res.collection) == 5 and not res.skipped
    listed = open_dataset(listing)
    assert len(listed) == 3 and listed.duplicates == 1
    res = run_pass(net, listed, [DIGITS_LAYER], cache_dir=tmp_path / "c")
    nb = neighbors(net, res, DIGITS_LAYER, k=1, queries=[0])
    assert res.collection.paths[nb.feature[0, 0]].endswith("copy.png") and nb.feature_dist[0, 0] < 1e-5


def test_bad_datasets_and_arguments(digits_model: vl.Model, digits_pass, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        open_dataset(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"xx")
    with pytest.raises(ArgumentError, match="none of the 1 images"):
        run_pass(digits_model, junk, [DIGITS_LAYER], cache_dir=tmp_path / "c")
    assert not any((tmp_path / "c").glob("*/index.json"))
    with pytest.raises(DatasetError, match="not a bundled dataset"):
        open_dataset("no/such/place")
    with pytest.raises(LayerError, match="did you mean|no layer|unknown"):
        run_pass(digits_model, "digits", ["features.relu9"], cache_dir=tmp_path / "c")
    res = run_pass(digits_model, "digits", ["head.fc"], cache_dir=tmp_path / "c")
    with pytest.raises(LayerError, match="no spatial output"):
        top_patches(digits_model, res, "head.fc", [0], k=3)
    with pytest.raises(ArgumentError, match="out of range"):
        top_patches(digits_model, digits_pass, DIGITS_LAYER, [128], k=3)
    small = run_pass(digits_model, open_dataset("digits").subset(range(5)), [DIGITS_LAYER], cache_dir=tmp_path / "c")
    with pytest.raises(ArgumentError, match="only 4 other images"):
        neighbors(digits_model, small, DIGITS_LAYER, k=5, queries=[0])


def test_cache_write_failure_keeps_previous_cache(digits_model: vl.Model, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    coll = open_dataset("digits").subset(range(64))
    done = run_pass(digits_model, coll, [DIGITS_LAYER], cache_dir=tmp_path)
    before = {p: p.read_bytes() for p in done.cache_dir.iterdir()}

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(CacheError, match="No space left"):
        run_pass(digits_model, coll, ["features.relu2"], cache_dir=tmp_path)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in done.cache_dir.iterdir()} == before
    assert run_pass(digits_model, coll, [DIGITS_LAYER], cache_dir=tmp_path).reused
    assert issubclass(CacheError, VisionlensError)


def test_large_maps_fit_a_sample_and_place_the_rest(digits_pass) -> None:  # type: ignore[no-untyped-def]
    x = np.asarray(digits_pass.features(DIGITS_LAYER))
    labels = np.asarray(digits_pass.collection.labels)
    emb = embed(x, "tsne", list(labels), fit_points=600)  # UMAP takes the same path (its JIT: 15 s)
    assert emb.coords.shape == (1797, 2) and np.isfinite(emb.coords).all()
    assert "fitted on 600 of 1,797 points" in emb.params
    assert emb.trustworthiness >= 0.85
    # the placed points land among fitted points of their own class
    fit = np.sort(np.random.default_rng(0).choice(1797, 600, replace=False))
    rest = np.setdiff1d(np.arange(1797), fit)
    d = ((emb.coords[rest][:, None] - emb.coords[fit][None]) ** 2).sum(-1)
    nearest = fit[np.argmin(d, axis=1)]
    assert (labels[nearest] == labels[rest]).mean() >= 0.9
