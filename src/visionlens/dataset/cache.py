"""One cache entry (a folder named by the work's key) shared safely by any number of processes,
on a local disk or on a network filesystem without reliable locks.

- A finished entry is a folder `ROOT/KEY` holding `index.json`; it appears by ONE atomic rename
  of a complete folder and is never written again, so a reader sees all of it or nothing.
- A writer works in a folder of its own, `ROOT/.KEY.work.HOST.PID.RAND`, and publishes it by
  renaming it to `ROOT/KEY`. When another writer published first, the rename fails and the
  loser uses the winner's entry (and deletes its own folder).
- A lock file `ROOT/.KEY.lock` (owner's pid, host and a token; created by a hard link, which
  is atomic on NFS too) says that someone is computing the entry: others wait for it instead
  of repeating the work. Its owner touches it every few seconds; it is stale when its owner is
  a dead process on this host, or when it has not been touched for `STALE_SECONDS` (any
  host). A stale lock is broken by renaming it away (one breaker wins).
- Checkpoints (for resume after a crash or SIGKILL) live in the writer's own folder. The next
  lock owner adopts the most advanced folder whose writer is gone (renamed to its own name:
  one adopter wins), so no two live writers ever share one. A writer that stops on an
  exception renames its folder `.KEY.released....`, adoptable at once.

Even when the lock does not hold (two owners at once), each owner still writes only in its
own folder and publication is one rename: the cache never holds a mixed result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STALE_SECONDS = 60.0  # a lock or work folder untouched this long is abandoned (any host)
HEARTBEAT_SECONDS = 5.0  # how often a writer touches its lock and folder
POLL_SECONDS = 0.25  # how often a waiting process looks again


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:60] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Slot:
    """The place of one cache entry: `ROOT/KEY`, its lock and its writers' folders.

    Args:
        root: the cache folder (several entries side by side).
        key: the entry's name (the work's fingerprint).

    Example:
        >>> from visionlens.dataset.cache import Slot
        >>> slot = Slot(Path(tempfile.mkdtemp()), "abc123")
        >>> work = slot.acquire()
        >>> (work / "index.json").write_text("{}") and slot.publish(work)
        True
        >>> slot.finished()
        True
    """

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.key = root, key
        self.final = root / key
        self.lock = root / f".{key}.lock"
        self.host, self.pid = _host(), os.getpid()
        self.token = uuid.uuid4().hex[:12]
        self._beat: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._locked = False

    # ------------------------------------------------------------ names

    def _name(self, kind: str) -> Path:
        return self.root / f".{self.key}.{kind}.{self.host}.{self.pid}.{uuid.uuid4().hex[:8]}"

    def _mine(self) -> Path:
        return self.root / f".{self.key}.work.{self.host}.{self.pid}.{self.token}"

    def _owner_gone(self, host: str, pid: int, mtime: float, now: float | None = None) -> bool:
        if host == self.host and not _alive(pid):
            return True
        return (self._now() if now is None else now) - mtime > STALE_SECONDS

    # ------------------------------------------------------------ state

    def finished(self) -> bool:
        """Whether a finished entry is published (its `index.json` exists).

        Returns:
            True when `ROOT/KEY/index.json` is a file.

        Example:
            >>> from visionlens.dataset.cache import Slot
            >>> Slot(Path(tempfile.mkdtemp()), "abc").finished()
            False
        """
        return (self.final / "index.json").is_file()

    def discard_final(self) -> None:
        """Move an unusable published entry (or an old unfinished folder in its place) out of
        the way and delete it; a concurrent reader keeps the files it has open."""
        trash = self._name("trash")
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.final, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------ the lock

    def _now(self) -> float:
        """The filesystem's clock (a network share's server may disagree with ours)."""
        probe = self.root / f".{self.key}.now.{self.host}.{self.pid}.{self.token}"
        try:
            probe.touch()
            return probe.stat().st_mtime
        except OSError:
            return time.time()
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def _try_lock(self) -> bool:
        tmp = self.root / f".{self.key}.lock.{self.host}.{self.pid}.{self.token}"
        owner = {"pid": self.pid, "host": self.host, "token": self.token, "since": time.time()}
        tmp.write_text(json.dumps(owner))
        try:
            os.link(tmp, self.lock)
            got = True
        except FileExistsError:
            # NFS may answer a retried link that was made with EEXIST: trust the link count
            got = tmp.stat().st_nlink == 2
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            try:  # no hard links here: exclusive creation instead
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                got = False
            else:
                with os.fdopen(fd, "w") as f:
                    json.dump(owner, f)
                got = True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._locked = got
        return got

    def _lock_owner(self) -> tuple[dict[str, Any], float] | None:
        try:
            mtime = self.lock.stat().st_mtime
            text = self.lock.read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text), mtime
        except ValueError:  # empty or half-written (a writer without hard links): stale once old
            return {"pid": -1, "host": "", "token": ""}, mtime

    def _break(self, stale: dict[str, Any]) -> None:
        """Remove a stale lock; if what was renamed away turns out to be a fresh lock (taken
        between our look and the rename), put it back."""
        away = self._name("trash")
        try:
            os.rename(self.lock, away)
        except FileNotFoundError:
            return
        try:
            if json.loads(away.read_text()).get("token") != stale.get("token"):
                with contextlib.suppress(OSError):
                    os.link(away, self.lock)
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            away.unlink()

    def unlock(self) -> None:
        """Remove the lock if it is still ours."""
        if not self._locked:
            return
        self._locked = False
        try:
            if json.loads(self.lock.read_text()).get("token") == self.token:
                self.lock.unlink()
        except (OSError, ValueError):
            pass

    def acquire(self, on_wait: Callable[[str], None] | None = None) -> Path | None:
        """Wait until this process may compute the entry; return its own work folder (an
        abandoned writer's folder adopted, with its checkpoint, or a new empty one), or None
        when a finished entry was published meanwhile (use it).

        Args:
            on_wait: called once with a line saying whom we wait for, when we wait.

        Returns:
            The work folder, or None.

        Example:
            >>> from visionlens.dataset.cache import Slot
            >>> work = Slot(Path(tempfile.mkdtemp()), "abc").acquire()
            >>> work.name.startswith(".abc.work.")
            True
        """
        self.root.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            if self.finished():
                return None
            if self._try_lock():
                if self.finished():
                    self.unlock()
                    return None
                return self._adopt()
            seen = self._lock_owner()
            if seen is None:
                continue  # released between our attempt and our look
            owner, mtime = seen
            if self._owner_gone(str(owner.get("host", "")), int(owner.get("pid", -1)), mtime):
                self._break(owner)
                continue
            if not told and on_wait is not None:
                on_wait(
                    f"waiting for process {owner.get('pid')} on {owner.get('host')}, which is computing the "
                    f"same features into {self.root}"
                )
                told = True
            time.sleep(POLL_SECONDS)

    def _adopt(self) -> Path:
        """Take over the most advanced abandoned work folder of this key (or make a new one);
        delete the other abandoned ones."""
        mine = self._mine()
        now = self._now()
        candidates: list[tuple[int, Path]] = []
        for p in self.root.glob(f".{self.key}.*"):
            parts = p.name.split(".")
            if len(parts) != 6 or parts[2] not in ("work", "released", "trash", "lock", "now") or p == mine:
                continue
            try:
                gone = parts[2] == "released" or self._owner_gone(parts[3], int(parts[4]), p.stat().st_mtime, now)
            except (OSError, ValueError):
                continue
            if not gone:
                continue
            if parts[2] in ("lock", "now"):  # a lock attempt's file left by a killed process
                with contextlib.suppress(OSError):
                    p.unlink()
                continue
            if parts[2] == "trash":
                shutil.rmtree(p, ignore_errors=True)
                continue
            try:
                done = int(json.loads((p / "state.json").read_text())["done"])
            except (OSError, ValueError, KeyError, TypeError):
                done = 0
            candidates.append((done, p))
        candidates.sort(key=lambda c: -c[0])
        adopted = False
        for _, p in candidates:
            if not adopted:
                try:
                    os.rename(p, mine)  # one adopter wins
                    adopted = True
                    continue
                except OSError:
                    continue
            trash = self._name("trash")
            with contextlib.suppress(OSError):
                os.rename(p, trash)
                shutil.rmtree(trash, ignore_errors=True)
        if not adopted:
            mine.mkdir()
        os.utime(mine)
        return mine

    # ------------------------------------------------------------ while working

    @contextlib.contextmanager
    def heartbeat(self, work: Path) -> Iterator[None]:
        """Touch the lock and the work folder every `HEARTBEAT_SECONDS` while the block runs,
        so that no one takes them for abandoned.

        Args:
            work: the folder `acquire` returned.

        Example:
            >>> from visionlens.dataset.cache import Slot
            >>> slot = Slot(Path(tempfile.mkdtemp()), "abc")
            >>> work = slot.acquire()
            >>> with slot.heartbeat(work):
            ...     pass
        """
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                for p in (self.lock, work):
                    with contextlib.suppress(OSError):
                        os.utime(p)

        thread = threading.Thread(target=beat, name="visionlens-cache-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def publish(self, work: Path) -> bool:
        """Rename the finished `work` folder to `ROOT/KEY` and drop the lock. When another
        writer published first, delete `work` instead (the entry is the same work).

        Args:
            work: a complete folder holding `index.json`.

        Returns:
            True when this folder became the entry, False when another one already was.

        Example:
            >>> from visionlens.dataset.cache import Slot
            >>> slot = Slot(Path(tempfile.mkdtemp()), "abc")
            >>> work = slot.acquire()
            >>> (work / "index.json").write_text("{}") and slot.publish(work)
            True
        """
        try:
            for attempt in range(2):
                try:
                    os.rename(work, self.final)
                    return True
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    if self.finished() or attempt:
                        break
                    self.discard_final()  # an unfinished folder of an older version: replace it
            trash = self._name("trash")
            os.rename(work, trash)
            shutil.rmtree(trash, ignore_errors=True)
            return False
        finally:
            self.unlock()

    def release(self, work: Path, keep: bool = True) -> None:
        """After a failure: leave `work` adoptable by the next run (its checkpoint resumes)
        or delete it, and drop the lock.

        Args:
            work: the folder `acquire` returned.
            keep: keep the checkpoint for a resume (False: delete the folder).

        Example:
            >>> from visionlens.dataset.cache import Slot
            >>> slot = Slot(Path(tempfile.mkdtemp()), "abc")
            >>> slot.release(slot.acquire())
        """
        try:
            if keep:
                with contextlib.suppress(OSError):
                    os.rename(work, self._name("released"))
            else:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            self.unlock()
