"""The dataset pass on Ray (a local instance started by the test, 2 CPUs): the same cache as
the local pass, resumable, and one-line errors for a bad engine or an unreachable cluster."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visionlens.dataset import open_dataset, run_pass
from visionlens.dataset.views import neighbors
from visionlens.digits import load_digits_cnn
from visionlens.errors import ArgumentError

LAYERS = ["features.relu2", "features.relu3"]


@pytest.fixture()
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray")

    def too_long(*_: object) -> None:
        raise TimeoutError("the Ray pass took over 240 s")

    before = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(240)  # a hung Ray job fails the test instead of the whole run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


@pytest.mark.slow
def test_ray_pass_equals_local_pass_and_resumes(local_ray: Any, tmp_path: Path) -> None:
    model, coll = load_digits_cnn(), open_dataset("digits").subset(range(320))
    local = run_pass(model, coll, LAYERS, batch_size=32, predict=True, cache_dir=tmp_path / "local")

    def stop(done: int, total: int) -> None:
        if done >= 3 * 32:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stopped on Ray...
        run_pass(model, coll, LAYERS, batch_size=32, predict=True, cache_dir=tmp_path / "ray", engine="ray",
                 workers=2, on_batch=stop)  # fmt: skip
    seen: list[int] = []
    on_ray = run_pass(model, coll, LAYERS, batch_size=32, predict=True, cache_dir=tmp_path / "ray", engine="ray",
                      workers=2, on_batch=lambda d, t: seen.append(d))  # fmt: skip
    assert seen[0] > 3 * 32 and seen[-1] == 320  # ...resumed from its checkpoint, on Ray
    for name in [*LAYERS, "pixels", "predictions"]:
        np.testing.assert_allclose(on_ray.features(name), local.features(name), atol=1e-5, rtol=0, err_msg=name)
    for name in LAYERS:
        a, b = local.top(name), on_ray.top(name)
        np.testing.assert_array_equal(a.rows, b.rows, err_msg=name)
        np.testing.assert_array_equal(a.positions, b.positions, err_msg=name)
        np.testing.assert_allclose(a.values, b.values, atol=1e-5, rtol=0)
    nl = neighbors(model, local, "features.relu3", k=5, queries=[0, 50, 100, 200])
    nr = neighbors(model, on_ray, "features.relu3", k=5, queries=[0, 50, 100, 200])
    np.testing.assert_array_equal(nl.feature, nr.feature)
    np.testing.assert_array_equal(nl.pixel, nr.pixel)
    # the same cache: the local engine finds the Ray pass's entry and reuses it
    again = run_pass(model, coll, LAYERS, batch_size=32, predict=True, cache_dir=tmp_path / "ray")
    assert again.reused and again.cache_dir == on_ray.cache_dir


def test_bad_engine_and_unreachable_cluster(tmp_path: Path) -> None:
    model = load_digits_cnn()
    with pytest.raises(ArgumentError, match="`engine` must be local or ray"):
        run_pass(model, "digits", LAYERS, engine="spark", cache_dir=tmp_path)
    with pytest.raises(ArgumentError, match="give `engine` ray"):
        run_pass(model, "digits", LAYERS, address="127.0.0.1:9", cache_dir=tmp_path)
    pytest.importorskip("ray")
    with pytest.raises(ArgumentError, match=r"cannot reach the Ray cluster at `address` 127\.0\.0\.1:9: Conn"):
        run_pass(model, "digits", LAYERS, engine="ray", address="127.0.0.1:9", cache_dir=tmp_path)
    with pytest.raises(ArgumentError, match="not HOST:PORT"):
        run_pass(model, "digits", LAYERS, engine="ray", address="nowhere", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written
