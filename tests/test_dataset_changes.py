"""A dataset folder that changes while the pass reads it: files added, removed, truncated. One
clear line says so, no image of the folder as it is at the end is lost, and the cache never
holds a result that mixes old and new contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from visionlens.dataset import run_pass
from visionlens.dataset.sources import DatasetError, open_dataset

LAYER = "features.relu3"


def _images(folder: Path, names: range) -> None:
    rng = np.random.default_rng(0)
    for i in names:
        sub = folder / f"c{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(sub / f"{i:03d}.png")


def _entries(cache: Path) -> list[Path]:
    """Finished cache entries (folders with an index), wherever the cache keeps them."""
    return sorted(p.parent for p in cache.rglob("index.json"))


@pytest.fixture(scope="module")
def model() -> vl.Model:
    return vl.load_model("digits_cnn")


def test_files_removed_and_truncated_during_the_pass(
    tmp_path: Path, model: vl.Model, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _images(data, range(40))
    listed = open_dataset(data)
    victims = [Path(p) for p in listed.paths[-6:]]  # read last: changed before the pass reaches them
    changed = []

    def meddle(done: int, total: int) -> None:
        if not changed:  # after the first batch only
            victims[0].unlink()
            victims[1].write_bytes(victims[1].read_bytes()[:40])  # truncated mid-write
            _images(data, range(40, 42))  # two more
            changed.append(done)

    res = run_pass(model, data, [LAYER], batch_size=8, workers=0, cache_dir=tmp_path / "cache", on_batch=meddle)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "changed during the pass" in ln]
    assert len(lines) == 1, err
    assert "1 added" not in lines[0] and "2 added, 1 removed, 1 changed" in lines[0], lines[0]
    # the result is the folder as it is now: 41 files, the truncated one skipped with its reason
    now = open_dataset(data)
    assert len(now) == 41 and [p for p, _ in res.skipped] == [str(victims[1])]
    assert res.collection.paths == [p for p in now.paths if p != str(victims[1])]
    # exactly one finished entry, identical to a clean pass over the folder as it is now
    assert len(_entries(tmp_path / "cache")) == 1
    clean = run_pass(model, data, [LAYER], batch_size=8, workers=0, cache_dir=tmp_path / "clean")
    assert not clean.reused and res.cache_dir.name == clean.cache_dir.name
    np.testing.assert_allclose(np.asarray(res.features(LAYER)), np.asarray(clean.features(LAYER)), atol=1e-5)
    # and it is what a rerun finds
    assert run_pass(model, data, [LAYER], batch_size=8, workers=0, cache_dir=tmp_path / "cache").reused


def test_files_only_added_keep_the_result_of_what_was_listed(
    tmp_path: Path, model: vl.Model, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _images(data, range(24))

    def add(done: int, total: int) -> None:
        if done == 8:
            _images(data, range(24, 27))

    res = run_pass(model, data, [LAYER], batch_size=8, workers=0, cache_dir=tmp_path / "cache", on_batch=add)
    err = capsys.readouterr().err
    assert err.count("3 image(s) were added during the pass") == 1, err
    assert len(res.collection) == 24 and not res.skipped  # whole for what was listed: nothing mixed in
    again = run_pass(model, data, [LAYER], batch_size=8, workers=0, cache_dir=tmp_path / "cache")
    assert len(again.collection) == 27 and not again.reused  # the new listing: its own entry
    assert len(_entries(tmp_path / "cache")) == 2


def test_a_folder_that_keeps_changing_is_a_one_line_error(
    tmp_path: Path, model: vl.Model, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _images(data, range(24))

    def rewrite(done: int, total: int) -> None:  # every pass: the last file rewritten mid-way
        if done == 8:
            last = sorted(data.rglob("*.png"))[-1]
            last.write_bytes(last.read_bytes()[:60])

    with pytest.raises(DatasetError, match="changed during the pass .* and again") as info:
        run_pass(model, data, [LAYER], batch_size=8, workers=0, cache_dir=tmp_path / "cache", on_batch=rewrite)
    assert "\n" not in str(info.value)  # a VisionlensError: the CLI prints it as one line, exit 2
    assert _entries(tmp_path / "cache") == []  # nothing cached, nothing mixed
