"""The feature cache under concurrency: processes at once on one cache folder (some killed
with SIGKILL), stale locks, abandoned checkpoints, a lost publication race, and accurate
messages for real write failures."""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlens.dataset import cache as cache_mod
from visionlens.dataset import engine, open_dataset, passcore, run_pass
from visionlens.dataset.cache import Slot
from visionlens.digits import load_digits_cnn

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["features.relu2", "features.relu3"]
FORK = multiprocessing.get_context("fork")  # real processes, without paying torch's import in each


def _child(cache: Path, n: int, batch: int, pause: float, conn: Connection) -> None:
    """A dataset pass in a process of its own, checkpointing after every batch; sends
    "ready", then the rows done after each batch it computes, then the result's folder."""
    torch.set_num_threads(1)
    engine._CHECKPOINT_SECONDS = 0.0  # a kill anywhere can resume from the last batch

    def step(done: int, total: int) -> None:
        conn.send(done)
        time.sleep(pause)

    conn.send("ready")
    coll = open_dataset("digits").subset(range(n))
    res = run_pass(load_digits_cnn(), coll, LAYERS, batch_size=batch, cache_dir=cache, on_batch=step)
    conn.send({"cache_dir": str(res.cache_dir), "reused": res.reused})


class _Proc:
    def __init__(self, cache: Path, n: int, batch: int, pause: float) -> None:
        self.conn, child = FORK.Pipe(duplex=False)
        self.proc = FORK.Process(target=_child, args=(cache, n, batch, pause, child), daemon=True)
        self.proc.start()
        self.seen: list[object] = []
        self.ready_at: float | None = None

    def poll(self) -> None:
        while self.conn.poll():
            try:
                msg = self.conn.recv()
            except EOFError:
                return
            self.seen.append(msg)
            if msg == "ready":
                self.ready_at = time.monotonic()

    def kill(self) -> None:
        if self.proc.pid is not None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def result(self) -> dict[str, object]:
        self.poll()
        (res,) = [m for m in self.seen if isinstance(m, dict)]
        return res


def _batches(p: _Proc) -> list[int]:
    return [m for m in p.seen if isinstance(m, int)]


def _wait(procs: list[_Proc], kills: Sequence[int] = (), timeout: float = 120) -> list[int]:
    """Wait for `procs`; the j-th of them to start computing is killed (SIGKILL) once it has
    reported kills[j] batches (while computing, checkpointing, finishing or publishing).
    Returns the indices of those that computed, in the order they started."""
    deadline = time.monotonic() + timeout
    order: list[int] = []  # processes in the order they started computing
    while any(p.proc.is_alive() for p in procs):
        assert time.monotonic() < deadline, "processes on one cache did not finish"
        for i, p in enumerate(procs):
            p.poll()
            done = _batches(p)
            if done and i not in order:
                order.append(i)
            j = order.index(i) if i in order else -1
            if 0 <= j < len(kills) and len(done) >= kills[j] and p.proc.is_alive():
                p.kill()
        time.sleep(0.002)
    for p in procs:
        p.proc.join()
        p.poll()
    return order


def _assert_same(a: Path, b: Path) -> None:
    """Two finished cache entries hold byte-identical files."""
    names = sorted(p.name for p in a.iterdir())
    assert sorted(p.name for p in b.iterdir()) == names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _clean(tmp: Path, n: int, batch: int) -> Path:
    coll = open_dataset("digits").subset(range(n))
    return run_pass(load_digits_cnn(), coll, LAYERS, batch_size=batch, cache_dir=tmp).cache_dir


def _dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_a_stop_between_the_top_k_files_and_the_progress_resumes_to_the_clean_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint writes each layer's top-k file, then the progress. A pass stopped in
    between (here the third progress write raises, as a kill would stop it there) leaves
    top-k files a batch ahead of the progress; the resumed pass merges that batch again and
    still ends byte-identical to a clean run (seen once in a run of the suite under load:
    the first layer's top-k held a batch twice)."""
    n, batch = 96, 16
    clean = _clean(tmp_path / "clean", n, batch)
    coll = open_dataset("digits").subset(range(n))
    real = passcore._write_json
    writes = []

    def stopped(path: Path, obj: object) -> None:
        if path.name == "state.json":
            writes.append(obj)
            if len(writes) >= 3:  # this one and the one an interrupted pass writes on its way out
                raise KeyboardInterrupt
        real(path, obj)

    monkeypatch.setattr(engine, "_CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(passcore, "_write_json", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_pass(load_digits_cnn(), coll, LAYERS, batch_size=batch, cache_dir=tmp_path / "shared")
    monkeypatch.setattr(passcore, "_write_json", real)
    res = run_pass(load_digits_cnn(), coll, LAYERS, batch_size=batch, cache_dir=tmp_path / "shared")
    assert not res.reused
    _assert_same(clean, res.cache_dir)


def test_processes_at_once_some_killed_all_end_as_one_clean_run(tmp_path: Path) -> None:
    n, batch = 960, 16  # 60 batches
    clean = _clean(tmp_path / "clean", n, batch)
    shared = tmp_path / "shared"
    kills = [int(k) for k in np.random.default_rng(13).integers(1, 12, 4)]
    procs = [_Proc(shared, n, batch, 0.01) for _ in range(4)]
    # each writer in turn dies after a random number of batches: the lock goes stale, a waiter
    # breaks it, adopts the dead writer's folder and resumes, and dies in turn
    order = _wait(procs, kills)
    assert [p.proc.exitcode for p in procs] == [-signal.SIGKILL] * 4
    assert len(order) == 4 and not shared.joinpath(clean.name).exists()
    runs = [_batches(procs[i]) for i in order]
    for before, after in zip(runs[:-1], runs[1:], strict=True):  # each went on from its predecessor's checkpoint
        assert before[-1] < after[0] <= before[-1] + 2 * batch, (before, after)

    again = [_Proc(shared, n, batch, 0.0) for _ in range(4)]  # all rerun at once
    (last,) = _wait(again)  # one computes, the others wait for its result
    assert [p.proc.exitcode for p in again] == [0] * 4
    resumed = _batches(again[last])
    assert runs[-1][-1] < resumed[0] <= runs[-1][-1] + 2 * batch and resumed[-1] == n
    assert [not p.result()["reused"] for p in again].count(True) == 1
    (entry,) = {str(p.result()["cache_dir"]) for p in again}
    assert sum(not p.result()["reused"] for p in again) == 1
    _assert_same(clean, Path(entry))
    assert _dirs(shared) == [Path(entry).name]  # no work folder or checkpoint left behind


@pytest.mark.parametrize("kill_at", [10, 30])  # mid-pass; after the last batch (finishing, publishing)
def test_sigkill_resumes_byte_identical(tmp_path: Path, kill_at: int) -> None:
    n, batch = 480, 16  # 30 batches
    clean = _clean(tmp_path / "clean", n, batch)
    shared = tmp_path / "shared"
    proc = _Proc(shared, n, batch, 0.02 if kill_at < 30 else 0.0)
    deadline = time.monotonic() + 60
    while len(_batches(proc)) < kill_at:
        assert proc.proc.is_alive() and time.monotonic() < deadline, proc.seen
        proc.poll()
        time.sleep(0.001)
    proc.kill()
    proc.proc.join()
    coll = open_dataset("digits").subset(range(n))
    seen: list[int] = []
    res = run_pass(
        load_digits_cnn(), coll, LAYERS, batch_size=batch, cache_dir=shared, on_batch=lambda d, t: seen.append(d)
    )
    if proc.proc.exitcode == -signal.SIGKILL and kill_at < 30:
        assert kill_at * batch <= seen[0] <= (kill_at + 2) * batch  # resumed from its checkpoint, not from scratch
    assert len(seen) <= 30 - kill_at + 2
    _assert_same(clean, res.cache_dir)
    assert _dirs(shared) == [res.cache_dir.name]


@pytest.mark.slow
def test_two_neighbors_commands_at_once_on_one_cache(tmp_path: Path) -> None:
    """The issue's report: two `visionlens neighbors DIR --cache C` started together."""
    rng = np.random.default_rng(0)
    for i in range(60):
        sub = tmp_path / "data" / f"c{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(sub / f"{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmds = [
        [sys.executable, "-m", "visionlens.cli", "neighbors", str(tmp_path / "data"), "-m", "digits_cnn", "--cache",
         str(tmp_path / "cache"), "-o", str(tmp_path / f"{name}.png"), "--save-array"]
        for name in ("a", "b")
    ]  # fmt: skip
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_array_equal(a["feature_rows"], b["feature_rows"])
    assert len(_dirs(tmp_path / "cache")) == 1


def test_losing_writer_uses_the_winners_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locks that do not hold (two owners at once): each writes in its own folder, the
    first to publish wins, the other returns the winner's entry."""

    def always(self: Slot) -> bool:
        self._locked = True
        return True

    monkeypatch.setattr(Slot, "_try_lock", always)
    model, coll = load_digits_cnn(), open_dataset("digits").subset(range(200))
    inner: list[object] = []

    def race(done: int, total: int) -> None:
        if not inner:  # a second writer of the same work finishes while the first is running
            inner.append(run_pass(model, coll, LAYERS, batch_size=50, cache_dir=tmp_path))

    outer = run_pass(model, coll, LAYERS, batch_size=50, cache_dir=tmp_path, on_batch=race)
    winner = inner[0]
    assert outer.cache_dir == winner.cache_dir and outer.reused  # type: ignore[attr-defined]
    assert not winner.reused  # type: ignore[attr-defined]
    assert _dirs(tmp_path) == [outer.cache_dir.name]
    np.testing.assert_array_equal(outer.features("features.relu3"), _load(outer.cache_dir, "features.relu3"))


def _load(folder: Path, layer: str) -> np.ndarray:
    return np.load(folder / f"features-{layer}.npy")


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _lock(slot: Slot, host: str, pid: int, age: float = 0.0) -> None:
    slot.root.mkdir(parents=True, exist_ok=True)
    slot.lock.write_text(json.dumps({"pid": pid, "host": host, "token": "theirs"}))
    if age:
        t = time.time() - age
        os.utime(slot.lock, (t, t))


def _acquire_in_thread(slot: Slot) -> tuple[threading.Thread, list[object]]:
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(slot.acquire()), daemon=True)
    t.start()
    return t, got


def test_stale_locks_are_broken_live_ones_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "POLL_SECONDS", 0.02)
    here = Slot(tmp_path / "a", "k1")
    _lock(here, here.host, _dead_pid())  # a dead process on this host
    assert here.acquire() is not None
    assert json.loads(here.lock.read_text())["token"] == here.token

    away = Slot(tmp_path / "b", "k2")
    _lock(away, "elsewhere", 1, age=2 * cache_mod.STALE_SECONDS)  # untouched for long, another host
    assert away.acquire() is not None

    torn = Slot(tmp_path / "e", "k5")  # an empty lock (its writer died mid-write), untouched for long
    _lock(torn, "", 0, age=2 * cache_mod.STALE_SECONDS)
    torn.lock.write_text("")
    old = time.time() - 2 * cache_mod.STALE_SECONDS
    os.utime(torn.lock, (old, old))
    assert torn.acquire() is not None

    live = Slot(tmp_path / "c", "k3")
    _lock(live, "elsewhere", 1)  # fresh, another host: we wait...
    t, got = _acquire_in_thread(live)
    time.sleep(0.3)
    assert t.is_alive() and not got
    live.final.mkdir()  # ...until its owner publishes the entry
    (live.final / "index.json").write_text("{}")
    t.join(timeout=5)
    assert got == [None]

    mine = Slot(tmp_path / "d", "k4")
    _lock(mine, mine.host, os.getpid())  # a live process here (this one): we wait...
    t, got = _acquire_in_thread(mine)
    time.sleep(0.3)
    assert t.is_alive()
    mine.lock.unlink()  # ...until it lets go without publishing: then we compute
    t.join(timeout=5)
    assert isinstance(got[0], Path) and got[0].is_dir()


def test_most_advanced_abandoned_checkpoint_is_adopted(tmp_path: Path) -> None:
    slot = Slot(tmp_path, "key")
    dead, host = _dead_pid(), slot.host
    for name, done in (("a", 3), ("b", 5)):
        folder = tmp_path / f".key.work.{host}.{dead}.{name}"
        folder.mkdir()
        (folder / "state.json").write_text(json.dumps({"done": done}))
    busy = tmp_path / f".key.work.{host}.{os.getpid()}.live"  # a live writer's: never touched
    busy.mkdir()
    work = slot.acquire()
    assert work is not None and json.loads((work / "state.json").read_text())["done"] == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted([busy.name, work.name])


@pytest.mark.slow  # a command in a process of its own (as root: without the capabilities that ignore modes)
def test_read_only_cache_folder_says_permission_denied(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def drop() -> None:  # root ignores permission bits: run the command without the capabilities that do so
        if os.geteuid() == 0:
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
                if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
                    raise OSError(ctypes.get_errno(), "cannot drop capabilities")

    cmd = [sys.executable, "-m", "visionlens.cli", "neighbors", "digits", "-m", "digits_cnn", "--cache", str(ro),
           "-o", str(tmp_path / "nb.png")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, preexec_fn=drop, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1] == (
        f"error: cannot write the feature cache in {ro}: Permission denied; free some space or choose another "
        "folder with --cache (finished caches are left intact)"
    )
    assert list(ro.iterdir()) == []
