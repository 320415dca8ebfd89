"""The dataset pass on Ray (a local instance started by the test, 2 CPUs): the same cache as
the local pass, resumable, and one-line errors for a bad engine or an unreachable cluster."""

from __future__ import annotations

import os
import signal
import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from visionlens.dataset import open_dataset, ray_engine, run_pass
from visionlens.dataset.sources import DatasetError
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


def _assert_same_pass(on_ray: Any, local: Any) -> None:
    """The Ray pass's features, pixels, predictions and top-k equal the local pass's."""
    for name in [*LAYERS, "pixels", "predictions"]:
        np.testing.assert_allclose(on_ray.features(name), local.features(name), atol=1e-5, rtol=0, err_msg=name)
    for name in LAYERS:
        a, b = local.top(name), on_ray.top(name)
        np.testing.assert_array_equal(a.rows, b.rows, err_msg=name)
        np.testing.assert_array_equal(a.positions, b.positions, err_msg=name)
        np.testing.assert_allclose(a.values, b.values, atol=1e-5, rtol=0)


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
    _assert_same_pass(on_ray, local)
    nl = neighbors(model, local, "features.relu3", k=5, queries=[0, 50, 100, 200])
    nr = neighbors(model, on_ray, "features.relu3", k=5, queries=[0, 50, 100, 200])
    np.testing.assert_array_equal(nl.feature, nr.feature)
    np.testing.assert_array_equal(nl.pixel, nr.pixel)
    # the same cache: the local engine finds the Ray pass's entry and reuses it
    again = run_pass(model, coll, LAYERS, batch_size=32, predict=True, cache_dir=tmp_path / "ray")
    assert again.reused and again.cache_dir == on_ray.cache_dir


class _DiesOnce(nn.Sequential):
    """The digits net with the same layer names, whose forward SIGKILLs its process (as the OOM
    killer would) on its second call in a process other than the test's, once in all: the
    first such process creates `marker` (with its pid) and dies; the others find it and run."""

    def __init__(self, net: nn.Module, marker: Path) -> None:
        super().__init__(OrderedDict(net.named_children()))
        self.marker, self.test_pid, self.calls = str(marker), os.getpid(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() != self.test_pid:
            self.calls += 1
            if self.calls == 2:
                try:
                    fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


@pytest.mark.slow
@pytest.mark.parametrize("retries", [None, 0], ids=["retried", "no-retries"])
def test_ray_pass_survives_a_worker_killed_mid_pass(
    local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: int | None
) -> None:
    """An actor SIGKILLed mid-pass: Ray restarts it and runs its batch again, and the pass
    completes by itself; with no retries left the pass stops, saying so, and the same command
    resumes from the checkpoint. Either way the cache is the local pass's, row for row."""
    if retries is not None:
        monkeypatch.setattr(ray_engine, "_TASK_RETRIES", retries)
    digits = load_digits_cnn()
    marker = tmp_path / "killed"
    model = replace(digits, net=_DiesOnce(digits.net, marker).eval())
    assert [n for n, _ in model.net.named_modules()] == [n for n, _ in digits.net.named_modules()]
    coll = open_dataset("digits").subset(range(320))
    local = run_pass(model, coll, LAYERS, batch_size=32, predict=True, cache_dir=tmp_path / "local")
    assert not marker.exists()  # the local pass runs in this process: nothing died yet
    seen: list[int] = []
    kw: dict[str, Any] = dict(batch_size=32, predict=True, cache_dir=tmp_path / "ray", engine="ray", workers=2,
                              on_batch=lambda d, t: seen.append(d))  # fmt: skip
    # the actors get `_DiesOnce` itself, not a reference to this module (importable only from the repo root)
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        if retries is None:
            on_ray = run_pass(model, coll, LAYERS, **kw)  # the batch is run again on a new actor
        else:
            with pytest.raises(DatasetError, match="a Ray worker died") as stopped:
                run_pass(model, coll, LAYERS, **kw)
            assert "run the same command again to resume" in str(stopped.value)
            assert "\n" not in str(stopped.value)
            before, seen[:] = (seen[-1] if seen else 0), []
            on_ray = run_pass(model, coll, LAYERS, **kw)
            assert seen[0] > before  # resumed from the checkpoint
    finally:
        local_ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert int(marker.read_text()) not in (0, os.getpid())  # an actor process really died
    assert seen[-1] == 320 and all(np.diff(seen) > 0)
    assert len(on_ray.features("features.relu3")) == 320
    _assert_same_pass(on_ray, local)


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
