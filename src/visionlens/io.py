"""Files and cache keys: writing atomically (a temporary file in the same folder, then a
rename), and the one stable hash of inputs, arrays and models that every cache is keyed on."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .errors import ArgumentError

if TYPE_CHECKING:
    from torch import nn


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise ArgumentError(f"{path}: is a directory; give an output file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ArgumentError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a normal file is wanted
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], writer: Callable[[IO[Any]], None]) -> Path:
    """Write `path` atomically: `writer` fills an open binary temporary file; returns the path."""
    with atomic_file(path) as f:
        writer(f)
    return Path(path)


def save_array(path: str | os.PathLike[str], array: Any) -> Path:
    """Save a tensor (moved to the CPU) or array as a .npy file, atomically; returns the path."""
    arr = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    return write_atomic(path, lambda f: np.save(f, arr))


def fingerprint(*parts: Any) -> str:
    """A stable hex digest of tensors, arrays, bytes and JSON-able values (strings, numbers,
    lists, dicts). Equal inputs give equal digests across processes and runs.

    Args:
        *parts: the values, in order; a tensor counts by its dtype, shape and values (on any
            device), a dict regardless of key order.

    Returns:
        The SHA-256 hex digest (64 characters).

    Example:
        >>> from visionlens.report import fingerprint
        >>> fingerprint("blocks.3", {"steps": 256}) == fingerprint("blocks.3", {"steps": 256})
        True
        >>> len(fingerprint(torch.zeros(3)))
        64
    """
    h = hashlib.sha256()
    for p in parts:
        if hasattr(p, "detach"):  # a torch tensor
            p = p.detach().cpu().contiguous().numpy()
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()


def model_fingerprint(net: nn.Module, name: str = "") -> str:
    """The fingerprint of a network's class and every tensor of its state (names and values)."""
    state = sorted(net.state_dict().items())
    return fingerprint(name, type(net).__name__, *(x for k, t in state for x in (k, t)))
