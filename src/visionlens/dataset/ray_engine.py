"""The dataset pass on Ray: Ray Data holds the image list, an actor pool (`map_batches` with a
class: the model is loaded once per actor, on a GPU where the cluster has one) reads, runs and
reduces each batch exactly as the local pass does (`engine._reduce`), and this process merges
the results in order into the same row files, top-k and checkpoints, so the cache it writes is
the one the local engine writes and every view works unchanged.

    ray start --head                          # on the head node; prints its address
    ray start --address HEAD:6379             # on each worker node
    visionlens neighbors photos/ --engine ray --address HEAD:6379 --cache /shared/cache

Without an address a Ray instance is started in this process (all local CPUs); a Ray already
initialized by the caller (`ray.init(...)`) is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArgumentError, ImageError
from ..progress import Progress
from .passcore import (
    PIXELS,
    PREDICTIONS,
    _checkpoint,
    _commit_batch,
    _feature_file,
    _finish,
    _Job,
    _reduce,
    _Reduced,
    _resume,
    _RowFile,
)
from .sources import DatasetError

_TASK_RETRIES = 3  # times a batch is run again after the actor running it died


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data ships in the `ray[data]` extra
    except ImportError:
        raise ArgumentError(
            '`engine` ray needs Ray with Ray Data: pip install "visionlens[ray]" (or "ray[data]")'
        ) from None
    return ray


def check_address(address: str | None) -> None:
    """Fail fast, in one line, when Ray is missing or nothing listens at `address` (ray.init
    would retry for minutes).

    Args:
        address: HOST:PORT (or ray://HOST:PORT), "auto", or None.

    Example:
        >>> from visionlens.dataset.ray_engine import check_address
        >>> check_address("127.0.0.1:9")  # doctest: +SKIP
        Traceback (most recent call last):
        visionlens.errors.ArgumentError: cannot reach the Ray cluster at `address` 127.0.0.1:9: ...
    """
    _ray()
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ArgumentError(f"`address` {address!r} is not HOST:PORT (as `ray start --head` prints it) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ArgumentError(
            f"cannot reach the Ray cluster at `address` {address}: {e.strerror or e}; start it with "
            "`ray start --head` there, or leave out `address` to run Ray on this machine"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected: the caller's instance when one is initialized (left running), else a
    new one (local, or joined at `address`) shut down at the end.

    Args:
        address: HOST:PORT of a running cluster, "auto" (the one on this machine), or None
            (start Ray in this process).

    Yields:
        The `ray` module.

    Example:
        >>> from visionlens.dataset.ray_engine import ray_session
        >>> with ray_session(None) as ray:  # doctest: +SKIP
        ...     ray.cluster_resources()["CPU"] > 0
        True
    """
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(address)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except ConnectionError as e:
        raise ArgumentError(f"cannot join the Ray cluster at `address` {address}: {e}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class _PassActor:
    """One actor of the pool: the model loaded once, on its GPU if it was given one; each call
    reads, preprocesses, runs and reduces one batch of rows."""

    def __init__(self, job: _Job, threads: int) -> None:
        from ..probe import Probe

        if not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(threads)
        self.job = job
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        job.model.net.to(self.device).eval()
        self.probe = Probe(job.model.net, job.layers, reduce=lambda name, out: _reduce(job.to_map(name, out), job.pool))
        self.reduced = self.probe.__enter__()
        self.size = job.model.preprocessing.input_size

    def _read(self, i: int) -> tuple[torch.Tensor, str]:
        coll = self.job.coll
        try:
            return self.job.model.preprocessing(coll.read(i)), ""
        except ImageError as e:
            return torch.zeros(3, self.size, self.size), str(e)
        except Exception as e:  # noqa: BLE001 - a broken file must never stop the pass
            return torch.zeros(3, self.size, self.size), f"{coll.paths[i]}: {type(e).__name__}: {e}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..tracing import forward_until

        rows = np.asarray(batch["data"], np.int64)
        read = [self._read(int(i)) for i in rows]
        x = torch.stack([t for t, _ in read]).to(self.device)
        out: dict[str, np.ndarray] = {"row": rows, "error": np.array([e for _, e in read], dtype=object)}
        with torch.inference_mode():
            if self.job.predict:
                p, c = self.job.model.net(x).float().softmax(1).max(1)
                out["pred"] = torch.stack([c.float(), p], 1).cpu().numpy()
            else:
                forward_until(self.job.model.net, x, self.job.deepest)
            for j, name in enumerate(self.job.layers):
                pooled, mx, where = self.reduced[name]
                out[f"pooled{j}"] = pooled.cpu().numpy()
                out[f"max{j}"] = mx.cpu().numpy()
                if where is not None:
                    out[f"where{j}"] = where.cpu().numpy()
            out["pixels"] = F.adaptive_avg_pool2d(x.float(), self.job.psize).flatten(1).cpu().numpy()
        return out


def _worker_died(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a process or node that died under the pass (the names this Ray has)."""
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError")
    return tuple(getattr(ray.exceptions, name) for name in names if hasattr(ray.exceptions, name))


def _pool_size(ray: Any, workers: int | None) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) for this cluster: one actor per GPU when it has
    GPUs; else half the CPUs, each actor asking for a share that leaves room for Ray Data's
    own tasks (with a whole CPU per actor on a 2-CPU machine the job starves)."""
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), int(res.get("GPU", 0))
    n = workers if workers else (gpus or max(1, min(8, int(cpus) // 2)))
    if gpus:
        return n, 1.0, min(1.0, gpus / n)
    share = max(0.25, (cpus - 1) / n)
    return n, (math.floor(share) if share >= 1 else share), 0.0


def run_on_ray(
    job: _Job, address: str | None, progress: bool, on_batch: Callable[[int, int], None] | None,
    checkpoint_seconds: float = 2.0,
) -> None:  # fmt: skip
    """Run `job` on Ray into its work folder: the same rows, top-k, checkpoints and final
    files as the local pass (`engine._run`), resuming from the folder's checkpoint.

    Args:
        job: the pass, its work folder set.
        address: the Ray cluster (see `ray_session`).
        progress: show a progress bar.
        on_batch: called as on_batch(done, total) after every merged batch.
        checkpoint_seconds: how often to checkpoint (and after the last batch).

    Example:
        >>> from visionlens.dataset import run_pass
        >>> model = vl.load_model("digits_cnn")
        >>> res = run_pass(model, "digits", ["features.relu3"], engine="ray")  # doctest: +SKIP
        >>> res.features("features.relu3").shape  # doctest: +SKIP
        (1797, 128)
    """
    coll, n = job.coll, len(job.coll)
    with ray_session(address) as ray:
        tops, state, resumed = _resume(job)
        files = {
            name: _RowFile(job.folder / (_feature_file(name) + ".partial"), n, dim, create=not resumed)
            for name, dim in job.dims.items()
        }
        ctx = ray.data.DataContext.get_current()
        before = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)  # the caller's, restored
        ctx.execution_options.preserve_order = True  # rows come back in order: checkpoints stay a prefix
        ctx.enable_progress_bars = False
        actors, cpus, gpus = _pool_size(ray, job.workers)
        todo = np.arange(state["done"], n, dtype=np.int64)
        # the image list as blocks of a few batches each, so that every actor gets work
        blocks = np.array_split(todo, max(1, min(math.ceil(len(todo) / job.batch_size), 4 * actors, 1024)))
        ds = ray.data.from_numpy(blocks)  # one column, "data": the rows to compute
        mapped = ds.map_batches(
            _PassActor,
            fn_constructor_kwargs={"job": job, "threads": max(1, int(cpus))},
            batch_size=job.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
            zero_copy_batch=True,
            # a dead actor (OOM-killed, a lost node) is restarted and its batch run again (a
            # batch is a pure function of its rows; the driver takes each row once, in order);
            # a batch that kills _TASK_RETRIES + 1 actors ends the pass instead of looping
            max_restarts=-1,
            max_task_retries=_TASK_RETRIES,
        )
        bar = Progress(
            f"features of {coll.name} on Ray ({actors} actors)", n, completed=state["done"], enabled=progress
        )
        last = time.monotonic()
        ck = (tops, state)
        try:
            for out in mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                rows = np.asarray(out["row"], np.int64)
                start = ck[1]["done"]
                if len(rows) == 0:
                    continue
                if not np.array_equal(rows, np.arange(start, start + len(rows))):
                    raise RuntimeError(f"Ray returned rows {rows[0]}..{rows[-1]} where row {start} was due")
                errors = [str(e) for e in out["error"]]
                reduced: _Reduced = {
                    name: (out[f"pooled{j}"], out[f"max{j}"], out.get(f"where{j}")) for j, name in enumerate(job.layers)
                }
                if job.predict:
                    files[PREDICTIONS].write(start, out["pred"])
                ck = _commit_batch(job, files, reduced, ck, start, errors, out[PIXELS], coll.paths)
                bar.advance(len(rows))
                if time.monotonic() - last > checkpoint_seconds or ck[1]["done"] == n:
                    _checkpoint(job, *ck)
                    last = time.monotonic()
                if on_batch is not None:
                    on_batch(ck[1]["done"], n)
        except BaseException as e:
            with contextlib.suppress(OSError):
                _checkpoint(job, *ck)
            if isinstance(e, _worker_died(ray)):
                first = (re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines() or [""])[0][:300]
                raise DatasetError(
                    f"a Ray worker died and the pass stopped at row {ck[1]['done']} of {n} "
                    f"({type(e).__name__}: {first}); run the same command again to resume from the checkpoint"
                ) from e
            raise
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = before
            bar.close()
            for f in files.values():
                f.close()
    if ck[1]["done"] != n:
        raise RuntimeError(f"the Ray pass stopped at row {ck[1]['done']} of {n}")
    _finish(job, *ck, list(files))
