"""Approximate neighbours: a FAISS IVF index whose measured recall@10 is honest, used by
`neighbors` above a size threshold or on request, and kept in the pass's cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import run
from visionlens.dataset import ann, open_dataset, run_pass
from visionlens.dataset.views import knn, neighbors
from visionlens.digits import load_digits_cnn
from visionlens.errors import ArgumentError


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Features with structure, like a network's: clusters in a low-dimensional space, lifted
    to d dimensions through a ReLU, plus noise."""
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((16, d)) / 4
    centres = rng.standard_normal((max(10, n // 500), 16))
    z = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.standard_normal((n, 16))
    return (np.maximum(z @ proj, 0) + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


def test_index_reaches_and_reports_its_recall_on_unseen_queries() -> None:
    x = clustered(40_000, 64)
    ix = ann.build_index(x, k=10, target_recall=0.95)
    assert ix.recall >= 0.95 and ix.nprobe < ix.nlist  # tuned, not a disguised exhaustive scan
    assert ix.memory_bytes >= x.nbytes
    # recall on queries the tuning never saw, against brute force, agrees with what was reported
    rng = np.random.default_rng(7)
    rows = rng.choice(len(x), 300, replace=False)
    _, exact = knn(x, x[rows], 10, exclude=rows)
    _, approx = knn(x, x[rows], 10, exclude=rows, index=ix)
    fresh = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert fresh >= 0.93 and abs(fresh - ix.recall) < 0.04
    assert not (approx == rows[:, None]).any()
    d_ap, _ = knn(x, x[rows], 10, exclude=rows, index=ix)
    assert np.all(np.diff(d_ap, axis=1) >= -1e-6)
    # one probe only: the measured recall must drop (the measurement is not a constant)
    ix.index.nprobe = 1
    one = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ix.search(x[rows], 10)[1], exact, strict=True)])
    assert one < fresh
    with pytest.raises(ArgumentError, match="target_recall"):
        ann.build_index(x[:1000], target_recall=1.5)


def test_neighbors_approx_on_request_cached_in_the_pass(tmp_path: Path) -> None:
    model = load_digits_cnn()
    res = run_pass(model, open_dataset("digits"), ["features.relu3"], cache_dir=tmp_path)
    exact = neighbors(model, res, "features.relu3", k=5, queries=list(range(0, 1797, 60)), approx=False)
    fast = neighbors(model, res, "features.relu3", k=5, queries=list(range(0, 1797, 60)), approx=True)
    assert exact.approx == "" and "recall@10" in fast.approx
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(fast.feature, exact.feature, strict=True)])
    assert overlap >= 0.9
    assert (res.cache_dir / "index-features.relu3.faiss").is_file()
    again = ann.cached_index(res.features("features.relu3"), res.cache_dir, "features.relu3")
    assert again.build_seconds == 0.0 and f"recall@10 {again.recall:.3f}" in fast.approx  # read, not rebuilt


def test_threshold_switches_to_approx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_digits_cnn()
    res = run_pass(model, open_dataset("digits").subset(range(600)), ["features.relu3"], cache_dir=tmp_path)
    assert neighbors(model, res, "features.relu3", k=3, queries=[0]).approx == ""
    monkeypatch.setattr("visionlens.dataset.views.APPROX_MIN_ROWS", 500)
    assert neighbors(model, res, "features.relu3", k=3, queries=[0]).approx.startswith("approximate: FAISS IVF")


def test_cli_approx_prints_recall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nb.png"
    code, text, err = run(capsys, "neighbors", "digits", "-m", "digits_cnn", "-k", "4", "--approx", "-o", str(out),
                          "--cache", str(tmp_path / "c"))  # fmt: skip
    assert code == 0, err
    assert "approximate: FAISS IVF" in text and "recall@10" in text and out.is_file()
