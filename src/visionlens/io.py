"""Writing files atomically: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ArgumentError


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
    with atomic_file(path) as f:
        writer(f)
    return Path(path)


def save_array(path: str | os.PathLike[str], array: Any) -> Path:
    arr = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    return write_atomic(path, lambda f: np.save(f, arr))
