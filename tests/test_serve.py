"""`visionlens serve`: the worker (one job at a time, cancel), the API on a small network
(results, cache, every malformed request a 4xx with one line, no path outside the server's
folders), the command line, and a bounded load test of the real command on the bundled model."""

from __future__ import annotations

import io
import json
import signal
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import visionlens as vl
from visionlens.cli import main
from visionlens.errors import ArgumentError
from visionlens.serve import bind, is_loopback
from visionlens.serve.jobs import Worker

from .conftest import ReLUNet, seeded
from .serve_helpers import command_server, png, post_json, request, run_job, thread_server

# ---------------------------------------------------------------- the worker


def test_worker_runs_one_job_at_a_time_in_order() -> None:
    running, peak, order = [0], [0], []
    lock = threading.Lock()

    def work(i: int) -> Any:
        def run(job: Any) -> dict[str, Any]:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.02)
            order.append(i)
            with lock:
                running[0] -= 1
            return {"i": i}

        return run

    w = Worker().start()
    try:
        # two "tabs" submitting at once
        jobs: list[Any] = []

        def tab(first: int) -> None:
            jobs.extend(w.submit(f"k{i}", "t", work(i)) for i in range(first, first + 5))

        tabs = [threading.Thread(target=tab, args=(s,)) for s in (0, 5)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join()
        done = [w.wait(j.id, 10) for j in jobs]
    finally:
        w.stop()
    assert peak[0] == 1 and sorted(order) == list(range(10))
    assert all(j.status == "done" and j.result == {"i": int(j.key[1:])} for j in done)


def _user_mistake(job: Any) -> dict[str, Any]:
    raise ArgumentError("no-such-model is not a model;\n  give one of ...")


def test_worker_joins_a_running_job_of_the_same_key_and_reports_failures_in_one_line() -> None:
    gate = threading.Event()
    w = Worker(log=lambda text: None).start()
    try:
        a = w.submit("same", "t", lambda job: gate.wait(5) and {"ok": 1})
        b = w.submit("same", "t", lambda job: {"ok": 2})
        assert a is b
        gate.set()
        assert w.wait(a.id, 5).result == {"ok": 1}
        bad = w.wait(w.submit("bad", "t", lambda job: {}["missing"]).id, 5)
        user = w.wait(w.submit("user", "t", _user_mistake).id, 5)
    finally:
        w.stop()
    assert bad.status == "failed" and bad.error == "KeyError: 'missing'"
    assert user.status == "failed" and "\n" not in (user.error or "") and "no-such-model" in (user.error or "")


def test_a_running_job_is_cancelled_at_its_next_forward_pass() -> None:
    net = seeded(ReLUNet())
    x = torch.randn(1, 3, 64, 64)
    passes = [0]

    def forever(job: Any) -> dict[str, Any]:
        while True:  # a technique that never looks at the job: only the hook can stop it
            with torch.no_grad():
                net(x)
            passes[0] += 1

    w = Worker().start()
    w.count_passes_of(net)
    try:
        job = w.submit("long", "t", forever)
        queued = w.submit("next", "t", lambda job: {"ran": True})
        while passes[0] < 3:
            time.sleep(0.01)
        assert w.position(queued) == 1
        w.cancel(queued.id)
        assert queued.status == "cancelled"  # a queued job at once
        t0 = time.monotonic()
        w.cancel(job.id)
        w.wait(job.id, 5)
        stopped_in = time.monotonic() - t0
        after = w.wait(w.submit("after", "t", lambda job: {"ok": True}).id, 5)
    finally:
        w.stop()
    assert job.status == "cancelled" and stopped_in < 1.0 and job.passes >= 3
    assert queued.result is None and after.result == {"ok": True}
    assert not net.training  # the model was left as it was


# ---------------------------------------------------------------- the API on a small network


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    model = vl.as_model(seeded(ReLUNet()))
    root = tmp_path_factory.mktemp("serve")
    with thread_server(model, root, max_upload=200_000) as (base, _):
        yield base, root


def _bomb() -> bytes:
    """A valid PNG header claiming 30000 x 30000 pixels (900 Mpx) in a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    )


def _upload(base: str, data: bytes, kind: str = "image/png") -> Any:
    return request(base + "/api/images", "POST", data, {"Content-Type": kind})


J = {"Content-Type": "application/json"}
MALFORMED = [
    ("GET", "/no/such/page", None, {}, 404),
    ("DELETE", "/api/jobs", None, {}, 405),
    ("GET", "/api/jobs/0123", None, {}, 404),
    ("POST", "/api/jobs/0123/cancel", None, {}, 404),
    ("POST", "/api/jobs", b"{not json", J, 400),
    ("POST", "/api/jobs", b"[1, 2]", J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain"}', {"Content-Type": "text/plain"}, 415),
    ("POST", "/api/jobs", b'{"kind": "rm -rf"}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "../../../etc/passwd"}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "0123456789abcdef0123456789abcdef"}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "sample:chelsea", "layer": "features.9"}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "sample:chelsea", "method": "magic"}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "sample:chelsea", "target": 99}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "sample:chelsea", "target": {"a": 1}}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "explain", "image": "sample:chelsea", "steps": 10000}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "unit", "layer": "features.0", "unit": 8}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "unit", "layer": "features.0", "unit": "1; ls"}', J, 400),
    ("POST", "/api/jobs", b'{"kind": "neighbors", "image": "sample:chelsea"}', J, 400),  # no dataset
    ("POST", "/api/images", b"GIF89a not really", {"Content-Type": "image/gif"}, 400),
    ("POST", "/api/images", b"", {"Content-Type": "image/png"}, 400),
    ("POST", "/api/images", png(), {"Content-Type": "text/html"}, 400),
    ("POST", "/api/images", _bomb(), {"Content-Type": "image/png"}, 400),
    ("POST", "/api/images", b"x" * 300_000, {"Content-Type": "image/png"}, 413),
    ("GET", "/api/images/..%2F..%2Fserve%2Fapp.py/view.png", None, {}, 404),
    ("GET", "/api/images/sample:..%2Fetc/view.png", None, {}, 404),
    ("GET", "/api/images/sample:..%5Cetc/view.png", None, {}, 400),
    ("GET", "/api/files/..%2Fuploads%2Fx.png", None, {}, 404),
    ("GET", "/api/files/..%5Cuploads%5Cx.png", None, {}, 400),
    ("GET", "/api/files/%2Fetc%2Fpasswd", None, {}, 404),
    ("GET", "/static/..%2Fapp.py", None, {}, 404),
    ("GET", "/static/app.py", None, {}, 404),
    ("GET", "/api/info", None, {"Host": "attacker.example:80"}, 400),  # DNS rebinding
    (
        "POST",
        "/api/jobs",
        b'{"kind": "explain", "image": "sample:chelsea"}',
        {**J, "Origin": "http://evil.example"},
        403,
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), MALFORMED,
                         ids=[f"{m} {p[:40]} {s}" for m, p, _, _, s in MALFORMED])  # fmt: skip
def test_malformed_requests_get_a_4xx_with_one_line(
    small: tuple[str, Path], method: str, path: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    base, _ = small
    r = request(base + path, method, body, headers)
    assert r.status == status, r.body
    text = r.body.decode()
    assert r.headers["content-type"] == "application/json"
    assert text.count("\n") == 0 and "Traceback" not in text and 0 < len(json.loads(text)["error"]) <= 300
    assert (
        r.headers["x-content-type-options"] == "nosniff" and "script-src 'self'" in r.headers["content-security-policy"]
    )


def test_an_upload_without_length_is_cut_at_the_limit(small: tuple[str, Path]) -> None:
    import http.client

    base, _ = small
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    conn.putrequest("POST", "/api/images")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for _ in range(40):  # 400 kB in 10 kB chunks against a 200 kB limit
            conn.send(b"2710\r\n" + b"x" * 10_000 + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer and close before the body ends
    reply = conn.getresponse()
    assert reply.status == 413 and b"larger than" in reply.read()
    conn.close()


def test_uploads_stay_in_the_servers_folder_and_decode_with_the_file_guards(small: tuple[str, Path]) -> None:
    base, root = small
    photo = np.asarray(vl.load_image("coffee").resize((150, 100)))
    r = _upload(base, png(photo))
    assert r.status == 201
    again = _upload(base, png(photo)).json
    assert again == r.json and r.json["width"] == 150 and len(r.json["id"]) == 32
    stored = list((root / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{r.json['id']}.png"]  # no temporary file left
    rgba = np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])  # RGBA is converted, as from a file
    assert _upload(base, png(rgba)).status == 201
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PDF")
    bad = _upload(base, buf.getvalue(), "image/png")
    assert bad.status == 400 and "not an image" in bad.json["error"]
    view = request(f"{base}/api/images/{r.json['id']}/view.png")
    with Image.open(io.BytesIO(view.body)) as im:
        assert view.headers["content-type"] == "image/png" and im.size == (224, 224)


def test_explain_job_gives_the_map_its_auc_and_units_and_is_cached(small: tuple[str, Path]) -> None:
    base, root = small
    image = _upload(base, png(seed=3)).json["id"]
    payload = {"kind": "explain", "image": image, "method": "gradcam", "layer": "features.4", "target": "3", "steps": 8}
    job = run_job(base, payload)
    assert job["status"] == "done", job
    r = job["result"]
    assert r["cam_layer"] == "features.4" and r["target"] == "class 3"
    assert len(r["deletion"]["scores"]) == len(r["fractions"]) == 9
    assert np.isfinite(r["deletion"]["auc"]) and np.isfinite(r["insertion"]["auc"])
    assert len(r["units"]) == 12 and all(0 <= u["unit"] < 16 for u in r["units"])
    contributions = [u["contribution"] for u in r["units"]]
    assert contributions == sorted(contributions, reverse=True)
    for name in [r["files"]["overlay"], r["files"]["map"], r["units"][0]["file"]]:
        pic = request(f"{base}/api/files/{name}")
        assert pic.status == 200 and pic.body[:4] == b"\x89PNG" and (root / "results" / name).is_file()
    again = post_json(base, "/api/jobs", payload).json
    assert again["status"] == "done" and again["stage"] == "cached" and again["result"] == r
    # a unit of that layer: its feature visualization (16 steps on this server)
    unit = run_job(base, {"kind": "unit", "layer": "features.4", "unit": r["units"][0]["unit"]})
    assert unit["status"] == "done" and unit["result"]["steps"] == 16 and unit["result"]["patches"] == []
    assert request(f"{base}/api/files/{unit['result']['vis']}").body[:4] == b"\x89PNG"


def test_cancel_over_http(small: tuple[str, Path]) -> None:
    base, _ = small
    job = post_json(base, "/api/jobs", {"kind": "unit", "layer": "features.2", "unit": 5, "steps": 512}).json
    while job["status"] == "queued" or (job["status"] == "running" and job["done"] < 2):
        time.sleep(0.02)
        job = request(f"{base}/api/jobs/{job['id']}").json
    assert request(f"{base}/api/jobs/{job['id']}/cancel", "POST").status == 200
    for _ in range(200):
        job = request(f"{base}/api/jobs/{job['id']}").json
        if job["status"] != "running":
            break
        time.sleep(0.02)
    assert job["status"] == "cancelled" and job["done"] < 512


# ---------------------------------------------------------------- the command line


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["serve", *args])
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--dataset", "/no/such/folder"], "/no/such/folder"),
        (["--max-upload", "0"], "--max-upload must be at least 1"),
        (["--unit-steps", "2"], "--unit-steps must be between 8 and 512"),
        (["--host", "no.such.host.invalid"], "cannot resolve the host"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, err = _cli(capsys, *args)
    assert code == 2 and says in err and err.strip().count("\n") == 0, err


def test_a_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    taken = bind("127.0.0.1", 0)
    try:
        code, err = _cli(capsys, "--port", str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert code == 2 and "is in use; choose another with --port" in err


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")


@pytest.mark.slow  # a process that imports torch and loads a model
def test_binding_elsewhere_prints_a_warning_and_sigterm_stops_it(tmp_path: Path) -> None:
    with command_server(tmp_path, "--model", "digits_cnn", "--host", "0.0.0.0") as server:
        pass  # the URL line came after the warning
    out = "".join(server.lines)
    assert "warning: serving on 0.0.0.0" in out and "--host 127.0.0.1" in out
    # uvicorn shuts down cleanly, then re-raises the signal it caught (exit status -15)
    assert server.proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out
    with command_server(tmp_path, "--model", "digits_cnn") as local:
        info = request(local.base + "/api/info").json
    assert "warning" not in "".join(local.lines) and info["model"] == "digits_cnn" and info["dataset"] is None


# ---------------------------------------------------------------- load


@pytest.mark.slow
def test_load_50_requests_from_4_clients_with_no_failure_and_memory_back(tmp_path: Path) -> None:
    """4 clients, 50 requests in all, on the bundled model: uploads, explains (computed and
    cached), unit pictures, neighbour searches, polling, pictures. Every request succeeds,
    every job finishes, and the server's memory after a second round is within 150 MB of
    after the first (measured: +0 to +30 MB)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        vl.load_image(name).resize((160, 120)).save(data / f"{name}.jpg")
    with command_server(tmp_path / "cache", "--dataset", str(data), "--unit-steps", "8") as server:
        base = server.base

        def client(c: int, n: int) -> list[str]:
            problems = []
            for i in range(n):
                kind = (c + i) % 5
                photo = png(np.asarray(vl.load_image(["chelsea", "coffee"][i % 2]).resize((120, 90))), seed=c)
                if kind == 0:
                    r = _upload(base, photo)
                    ok = r.status == 201
                elif kind in (1, 2):
                    method = ["gradcam", "gradient", "gradcam++"][(c + i) % 3]
                    job = run_job(base, {"kind": "explain", "image": "sample:" + ["chelsea", "coffee"][i % 2],
                                         "method": method, "layer": "blocks.5", "steps": 8}, timeout=240)  # fmt: skip
                    ok = (
                        job["status"] == "done"
                        and request(base + "/api/files/" + job["result"]["files"]["overlay"]).status == 200
                    )
                elif kind == 3:
                    job = run_job(
                        base, {"kind": "neighbors", "image": "sample:chelsea", "layer": "blocks.5", "k": 3}, 240
                    )
                    ok = job["status"] == "done" and len(job["result"]["neighbors"]) == 3
                else:
                    job = run_job(base, {"kind": "unit", "layer": "blocks.5", "unit": c}, timeout=240)
                    ok = job["status"] == "done" and len(job["result"]["patches"]) == 4
                if not ok:
                    problems.append(f"client {c} request {i} kind {kind} failed")
            return problems

        def round_(n: int) -> list[str]:
            with ThreadPoolExecutor(4) as pool:
                return [p for ps in pool.map(lambda c: client(c, n), range(4)) for p in ps]

        assert round_(3) == []  # warm-up: the model's first passes, the dataset pass
        start = server.rss_mb()
        t0 = time.monotonic()
        problems = round_(12)  # 48 requests (+ polls and pictures)
        took = time.monotonic() - t0
        end = server.rss_mb()
        print(f"load: 48 requests from 4 clients in {took:.1f} s; RSS {start:.0f} MB -> {end:.0f} MB")
        assert problems == []
        assert request(base + "/api/info").status == 200
    assert end - start < 150, (start, end)
