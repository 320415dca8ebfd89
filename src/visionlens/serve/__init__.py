"""`visionlens serve`: a live local explorer of one model. Drop an image, pick a layer, a method
and a target, see the map with its deletion / insertion AUC, click a unit for its feature
visualization and top dataset patches, search a dataset for an image's nearest neighbours.

- `work.Session`: the model held in memory, request checks, cached results on disk;
- `jobs.Worker`: the one thread that runs model work, queued, with progress and cancel;
- `app.create_app`: the Starlette app (plain HTML/JS from `static/`, no CDN);
- `serve`: bind (127.0.0.1 by default) and run it with uvicorn.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ArgumentError

if TYPE_CHECKING:
    from ..models import Model

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost).

    Args:
        host: an address or host name.

    Returns:
        True for loopback addresses.

    Example:
        >>> from visionlens.serve import is_loopback
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
        (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a port in use or an address not on this machine is
    one line saying so.

    Args:
        host: the address to bind.
        port: the port (0: any free one).

    Returns:
        The bound, listening socket.

    Example:
        >>> from visionlens.serve import bind
        >>> s = bind("127.0.0.1", 0); s.getsockname()[0]
        '127.0.0.1'
        >>> s.close()
    """
    if not 0 <= port <= 65535:
        raise ArgumentError(f"`port` must be between 0 and 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ArgumentError(f"cannot resolve the host {host!r}; give an address such as 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        why = "is in use; choose another with `port`" if e.errno == 98 else f"cannot be bound ({e.strerror})"
        raise ArgumentError(f"{host}:{port} {why}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    model: Model,
    *,
    dataset: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    root: str | os.PathLike[str] | None = None,
    max_upload_mb: int = 20,
    unit_steps: int = 96,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the explorer until Ctrl-C (or SIGTERM).

    Args:
        model: the model to explore (held in memory; one job at a time runs on it).
        dataset: a dataset for neighbour search and top patches (folder, .txt list, samples,
            digits), or None.
        host: the address to bind; anything but loopback prints a warning.
        port: the port (0: any free one).
        root: the server's own folder for uploads and cached results (default:
            `work.default_root()`).
        max_upload_mb: the largest upload accepted, in MB.
        unit_steps: optimization steps of a unit's feature visualization.
        ready: called with the page's URL once the server listens (default: print it).

    Example:
        >>> from visionlens.serve import serve
        >>> serve(vl.load_model(), port=8765)  # doctest: +SKIP
        visionlens explorer: http://127.0.0.1:8765/ (Ctrl-C stops it)
    """
    import uvicorn

    from .app import create_app
    from .jobs import Worker
    from .work import Session, default_root

    if max_upload_mb < 1:
        raise ArgumentError("`max_upload_mb` must be at least 1")
    loopback = is_loopback(host)
    sock = bind(host, port)
    try:
        session = Session(model, Path(root) if root is not None else default_root(), dataset, unit_steps)
        if not loopback:
            print(
                f"warning: serving on {host}, not only on this machine: anyone who can reach it can upload "
                "images and run the model (there is no login); use --host 127.0.0.1 to keep it local",
                file=sys.stderr,
                flush=True,
            )
        worker = Worker(log=lambda text: print(text, file=sys.stderr, flush=True)).start()
        worker.count_passes_of(model.net)
        hosts = LOOPBACK_NAMES | {host} if loopback else None
        app = create_app(session, worker, max_upload=max_upload_mb * 1024 * 1024, hosts=hosts)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown}:{bound_port}/"
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5, lifespan="off")
        server = uvicorn.Server(config)
        say = ready or (lambda u: print(f"visionlens explorer: {u} (Ctrl-C stops it)", flush=True))

        def announce() -> None:  # once uvicorn listens and handles Ctrl-C and SIGTERM itself
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                say(url)

        threading.Thread(target=announce, daemon=True).start()
        try:
            server.run(sockets=[sock])
        finally:
            worker.stop()
    finally:
        sock.close()


__all__ = ["bind", "is_loopback", "serve"]
