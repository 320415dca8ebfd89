"""The live explorer's web app (Starlette, served by uvicorn): one page of plain HTML and JS
from this package, and a small JSON API over the `Session` and its one worker thread.

    GET  /                        the page            GET  /static/app.js, /static/app.css
    GET  /api/info                model, layers, methods, class names, samples, dataset
    POST /api/images              an image as the raw body (Content-Type image/*) -> {id}
    GET  /api/images/{id}/view.png  what the model sees of it
    POST /api/jobs                {"kind": "explain" | "unit" | "neighbors", ...} -> a job
    GET  /api/jobs/{id}           its status, progress and result
    POST /api/jobs/{id}/cancel    cancel it
    GET  /api/files/{name}        a result's picture

Every error is a 4xx (5xx for a bug) whose body is one line of JSON, {"error": "..."}; no
traceback reaches the page. Requests whose Host is not the address bound (DNS rebinding), and
writes from another origin, are refused; POSTs must say what they send (JSON or an image), so
a plain cross-site form cannot reach the API."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import VisionlensError
from .jobs import Worker
from .work import IMAGE_ID, Session

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
STATIC = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
MAX_JSON = 64 * 1024
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
     b"style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())[:300]}, status_code=status)


class Guard:
    """ASGI middleware: security headers on every response; the Host header must be one of
    `hosts` (when given); POST requests from another origin are refused.

    Args:
        app: the wrapped ASGI app.
        hosts: accepted Host names (without port), or None to accept any.

    Example:
        >>> from visionlens.serve.app import Guard
        >>> Guard(lambda scope, receive, send: None, {"127.0.0.1"}).hosts
        {'127.0.0.1'}
    """

    def __init__(self, app: ASGI, hosts: set[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        problem = None
        if self.hosts is not None and name.strip("[]") not in self.hosts:
            problem = _error(400, "unexpected Host header: open the address the server printed")
        elif scope["method"] not in ("GET", "HEAD") and "origin" in headers and headers["origin"] != f"http://{host}":
            problem = _error(403, "requests from another site are refused")

        async def secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + HEADERS
            await send(message)

        if problem is not None:
            await problem(scope, receive, secured)
        else:
            await self.app(scope, receive, secured)


def create_app(
    session: Session, worker: Worker, *, max_upload: int = 20 * 1024 * 1024, hosts: set[str] | None = None
) -> ASGI:
    """The ASGI app of the explorer.

    Args:
        session: the model, dataset and folders.
        worker: the started worker thread that runs model work.
        max_upload: the largest upload accepted, in bytes.
        hosts: Host header names accepted (None: any; the CLI gives the loopback names when
            it binds to loopback).

    Returns:
        The ASGI app (Starlette inside a `Guard`).

    Example:
        >>> from visionlens.serve.app import create_app
        >>> from visionlens.serve.jobs import Worker
        >>> from visionlens.serve.work import Session
        >>> app = create_app(Session(vl.load_model("digits_cnn"), "/tmp/vl-serve"), Worker())
        >>> callable(app)
        True
    """

    async def page(request: Request) -> Response:
        return _static("index.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            raise HTTPException(404, "no such file")
        return _static(name)

    async def info(request: Request) -> Response:
        return JSONResponse(session.info())

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_upload):
            return _error(413, f"the upload is larger than {max_upload // (1024 * 1024)} MB")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_upload:
                return _error(413, f"the upload is larger than {max_upload // (1024 * 1024)} MB")
            chunks.append(chunk)
        stored = await run_in_threadpool(session.add_upload, b"".join(chunks), request.headers.get("content-type", ""))
        return JSONResponse(stored, status_code=201)

    async def view(request: Request) -> Response:
        image = request.path_params["image"]
        if not IMAGE_ID.match(image) and not image.startswith("sample:"):
            raise HTTPException(404, "no such image")
        path = await run_in_threadpool(session.view_png, image)
        return FileResponse(path, media_type="image/png")

    async def file(request: Request) -> Response:
        return FileResponse(session.result_file(request.path_params["name"]), media_type="image/png")

    async def submit(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _error(415, "send the job as JSON (Content-Type: application/json)")
        body = await request.body()
        if len(body) > MAX_JSON:
            return _error(413, "the request is too large")
        try:
            params = json.loads(body)
        except ValueError:
            return _error(400, "the body is not valid JSON")
        if not isinstance(params, dict):
            return _error(400, "the body must be a JSON object")
        makers = {
            "explain": session.explain_request,
            "unit": session.unit_request,
            "neighbors": session.neighbors_request,
        }
        kind = params.get("kind")
        if kind not in makers:
            return _error(400, f"`kind` must be one of {', '.join(makers)}")
        key, work = makers[kind](params)
        cached = session.cached(key)
        job = worker.finished(key, kind, cached) if cached is not None else worker.submit(key, kind, work)
        return JSONResponse({**job.view(), "ahead": worker.position(job)}, status_code=202)

    async def status(request: Request) -> Response:
        job = worker.get(request.path_params["job"])
        if job is None:
            raise HTTPException(404, "no such job (finished jobs are forgotten after a while)")
        return JSONResponse({**job.view(), "ahead": worker.position(job)})

    async def cancel(request: Request) -> Response:
        job = worker.cancel(request.path_params["job"])
        if job is None:
            raise HTTPException(404, "no such job")
        return JSONResponse(job.view())

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail)

    async def user_error(request: Request, exc: Exception) -> Response:
        return _error(400, str(exc))

    async def bug(request: Request, exc: Exception) -> Response:
        import traceback

        print(f"{request.method} {request.url.path} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/api/images", upload, methods=["POST"]),
        Route("/api/images/{image}/view.png", view),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}", status),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/files/{name}", file),
    ]
    handlers: Any = {HTTPException: http_error, VisionlensError: user_error, Exception: bug}
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Guard(app, hosts)


def _static(name: str) -> Response:
    data = resources.files("visionlens.serve").joinpath("static").joinpath(name).read_bytes()
    headers = {"cache-control": "no-cache"}
    return Response(data, media_type=STATIC[name], headers=headers)
