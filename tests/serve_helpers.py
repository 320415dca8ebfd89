"""Running the live explorer in tests: in a thread of the test process (fast, any model), or
as the `visionlens serve` command in its own process (what a user runs; its memory can be
measured from outside)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import visionlens as vl


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> Reply:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def post_json(base: str, path: str, payload: Any) -> Reply:
    return request(base + path, "POST", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def run_job(base: str, payload: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Submit a job and poll it until it is finished; returns its last view."""
    r = post_json(base, "/api/jobs", payload)
    assert r.status == 202, r.body
    job = r.json
    end = time.monotonic() + timeout
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < end, job
        time.sleep(0.05)
        job = request(f"{base}/api/jobs/{job['id']}").json
    return job


def png(picture: np.ndarray | None = None, size: int = 96, seed: int = 0) -> bytes:
    import io

    if picture is None:
        picture = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def thread_server(model: vl.Model, root: Path, dataset: str | None = None, **options: Any) -> Iterator[tuple[str, Any]]:
    """The app on a free loopback port, served by uvicorn in a thread; yields (base URL, worker)."""
    import uvicorn

    from visionlens.serve import LOOPBACK_NAMES, bind
    from visionlens.serve.app import create_app
    from visionlens.serve.jobs import Worker
    from visionlens.serve.work import Session

    session = Session(model, root, dataset, unit_steps=options.pop("unit_steps", 16))
    worker = Worker(log=lambda text: None).start()
    worker.count_passes_of(model.net)
    app = create_app(session, worker, hosts=LOOPBACK_NAMES, **options)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    try:
        yield base, worker
    finally:
        server.should_exit = True
        thread.join(10)
        worker.stop()
        sock.close()


@dataclass
class Process:
    proc: subprocess.Popen[str]
    base: str
    lines: list[str]

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", text)
        assert found is not None
        return int(found.group(1)) / 1024


@contextmanager
def command_server(root: Path, *args: str, timeout: float = 120) -> Iterator[Process]:
    """`visionlens serve --port 0 ARGS` in its own process; yields once it printed its URL."""
    env = {**os.environ, "VISIONLENS_CACHE": str(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "visionlens.cli", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    base = None
    end = time.monotonic() + timeout
    assert proc.stdout is not None
    while base is None and time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"http://\S+:(\d+)/", line)  # bound elsewhere: still reachable on loopback
        base = f"http://127.0.0.1:{found.group(1)}" if found else None
    if base is None:
        proc.kill()
        raise AssertionError("the server did not start:\n" + "".join(lines) + (proc.stdout.read() or ""))
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        yield Process(proc, base, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
