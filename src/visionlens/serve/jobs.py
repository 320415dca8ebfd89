"""The server's one worker thread: model work waits in a queue and runs one job at a time, so
that any number of browser tabs cannot run the model in parallel and oversubscribe the CPU.

A job reports its progress (`Job.progress`) and can be cancelled: a forward pre-hook on every
module checks the running job's flag, so a cancelled job stops at its next forward pass
whatever technique it runs, and the probes restore the model as the exception passes."""

from __future__ import annotations

import collections
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import VisionlensError


class Cancelled(Exception):
    """Raised inside a job's work when the job was cancelled."""


@dataclass
class Job:
    """One piece of model work and where it stands.

    Attributes:
        id: the job's id (hex).
        key: the cache key of its result; a second request for the same key joins this job.
        kind: what it computes ("explain", "unit", "neighbors").
        work: the function computing the result from the job (it may call `progress`).
        status: queued, running, done, failed or cancelled.
        stage: what it is doing now, in words.
        done: steps done in the current stage.
        total: steps in the current stage (0: unknown).
        passes: forward passes run so far.
        result: the JSON-able result when done.
        error: one line saying why it failed.

    Example:
        >>> from visionlens.serve.jobs import Job
        >>> Job("j1", "k", "explain", lambda job: {}).view()["status"]
        'queued'
    """

    id: str
    key: str
    kind: str
    work: Callable[[Job], dict[str, Any]]
    status: str = "queued"
    stage: str = "waiting for the model"
    done: int = 0
    total: int = 0
    passes: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    started: float = 0.0
    ended: float = 0.0
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.status in ("done", "failed", "cancelled")

    def progress(self, stage: str | None = None, done: int | None = None, total: int | None = None) -> None:
        """Report progress from inside the work; raises `Cancelled` when the job was cancelled.

        Args:
            stage: what the job does now (resets done and total unless given).
            done: steps done in this stage.
            total: steps in this stage.
        """
        if stage is not None and stage != self.stage:
            self.stage, self.done, self.total = stage, 0, 0
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if self.cancel_event.is_set():
            raise Cancelled

    def view(self) -> dict[str, Any]:
        """The job as the API returns it.

        Returns:
            A JSON-able dict: id, kind, status, stage, done, total, passes, seconds, and
            result or error.
        """
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "passes": self.passes,
            "seconds": round((self.ended or time.monotonic()) - self.started, 2) if self.started else 0.0,
        }
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class Worker:
    """One thread running queued jobs in order, with at most `keep` finished jobs remembered.

    Args:
        keep: how many jobs to remember (finished ones are forgotten oldest first).
        log: where a failing job's traceback goes (default: stderr of the server).

    Example:
        >>> from visionlens.serve.jobs import Worker
        >>> w = Worker().start()
        >>> job = w.submit("key", "explain", lambda job: {"answer": 42})
        >>> w.wait(job.id, 5).result
        {'answer': 42}
        >>> w.stop()
    """

    def __init__(self, keep: int = 256, log: Callable[[str], None] | None = None) -> None:
        self.keep = keep
        self.log = log or (lambda text: print(text, flush=True))
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._pending: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._current: Job | None = None
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._hook: Any = None
        self._net: Any = None
        self._stopping = False

    # ------------------------------------------------------------ the caller's side

    def start(self) -> Worker:
        """Start the thread and the cancellation hook; returns the worker."""
        import torch

        def check(module: Any, args: Any) -> None:
            job = self._current
            if job is not None and threading.get_ident() == self._ident:
                if module is self._net:
                    job.passes += 1
                if job.cancel_event.is_set():
                    raise Cancelled

        self._hook = torch.nn.modules.module.register_module_forward_pre_hook(check)
        self._thread = threading.Thread(target=self._loop, name="visionlens-model", daemon=True)
        self._thread.start()
        return self

    def count_passes_of(self, net: Any) -> None:
        """Count forward passes of this network (the model's `net`) in each job's `passes`."""
        self._net = net

    def stop(self) -> None:
        """Cancel what is queued and running, end the thread and remove the hook."""
        with self._cv:
            self._stopping = True
            for job in list(self._pending):
                job.cancel_event.set()
            if self._current is not None:
                self._current.cancel_event.set()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def submit(self, key: str, kind: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        """Queue work, or return the unfinished job already computing the same key.

        Args:
            key: the result's cache key.
            kind: what it computes.
            work: the function computing the result.

        Returns:
            The job (queued, or already running).
        """
        with self._cv:
            for job in reversed(self.jobs.values()):
                if job.key == key and not job.finished and not job.cancel_event.is_set():
                    return job
            job = Job(uuid.uuid4().hex, key, kind, work)
            self.jobs[job.id] = job
            self._pending.append(job)
            self._forget()
            self._cv.notify_all()
            return job

    def finished(self, key: str, kind: str, result: dict[str, Any]) -> Job:
        """Record a job answered from the cache, without queueing it.

        Returns:
            A job that is already done.
        """
        job = Job(uuid.uuid4().hex, key, kind, lambda job: result, status="done", stage="cached", result=result)
        with self._cv:
            self.jobs[job.id] = job
            self._forget()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if it is remembered."""
        with self._cv:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one at once, a running one at its next forward pass.

        Returns:
            The job, or None when no such job is remembered.
        """
        with self._cv:
            job = self.jobs.get(job_id)
            if job is None or job.finished:
                return job
            job.cancel_event.set()
            if job in self._pending:
                self._pending.remove(job)
                job.status, job.stage = "cancelled", "cancelled"
            return job

    def position(self, job: Job) -> int:
        """How many jobs run before this one (0: it is running or next)."""
        with self._cv:
            try:
                return self._pending.index(job) + (1 if self._current is not None else 0)
            except ValueError:
                return 0

    def wait(self, job_id: str, timeout: float) -> Job:
        """Block until the job is finished (for tests and scripts).

        Returns:
            The job.
        """
        end = time.monotonic() + timeout
        with self._cv:
            job = self.jobs[job_id]
            while not job.finished:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
                self._cv.wait(left)
            return job

    def _forget(self) -> None:
        while len(self.jobs) > self.keep:
            oldest = next((j for j in self.jobs.values() if j.finished), None)
            if oldest is None:
                break
            del self.jobs[oldest.id]

    # ------------------------------------------------------------ the thread

    def _loop(self) -> None:
        self._ident = threading.get_ident()
        while True:
            with self._cv:
                while not self._pending and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    for job in self._pending:
                        job.status = "cancelled"
                    self._pending.clear()
                    self._cv.notify_all()
                    return
                job = self._pending.popleft()
                self._current = job
                job.status, job.stage, job.started = "running", "starting", time.monotonic()
            try:
                job.result = job.work(job)
                status = "done"
            except Cancelled:
                status = "cancelled"
            except VisionlensError as e:
                job.error, status = _one_line(str(e)), "failed"
            except Exception as e:  # a bug or a library error: one line for the page, the traceback in the log
                self.log(f"job {job.kind} {job.id} failed:\n{traceback.format_exc()}")
                job.error, status = _one_line(f"{type(e).__name__}: {e}"), "failed"
            with self._cv:
                job.status, job.ended = status, time.monotonic()
                job.stage = {"done": "done", "cancelled": "cancelled"}.get(status, "failed")
                self._current = None
                self._cv.notify_all()


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
