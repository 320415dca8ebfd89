"""One progress display for every long job: a rich bar on a terminal; when stderr is not a
terminal (a pipe, a log file, `make demo`), a plain line every few seconds instead, so that
the job never looks stalled; nothing when disabled."""

from __future__ import annotations

import sys
import time
from typing import Any

PLAIN_EVERY_S = 5.0  # seconds between plain progress lines


class Progress:
    """A counted job: `advance` it, `describe` what it is doing, `close` it (or use `with`).

    Args:
        description: what the job is (`features of blocks.5`).
        total: how many steps it has.
        completed: how many are already done (a resumed job).
        enabled: False shows nothing at all.
        transient: remove the terminal bar when the job ends.
        interactive: force the terminal bar (True) or plain lines (False); default: the bar
            exactly when stderr is a terminal.
    """

    def __init__(
        self,
        description: str,
        total: int,
        *,
        completed: int = 0,
        enabled: bool = True,
        transient: bool = False,
        interactive: bool | None = None,
    ) -> None:
        self.description, self.total, self.completed, self.note = description, total, completed, ""
        self.enabled = enabled
        self._bar: Any = None
        self._last = time.monotonic()
        self._start = self._last
        if not enabled:
            return
        if interactive is None:
            interactive = sys.stderr.isatty()
        if interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                "eta",
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
                auto_refresh=False,
                transient=transient,
            )
            self._task = self._bar.add_task(description, total=total, completed=completed, note="")
            self._bar.start()
        else:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> None:
        elapsed = time.monotonic() - self._start
        note = f"  {self.note}" if self.note else ""
        print(f"{self.description}: {self.completed}/{self.total} ({elapsed:.0f} s){note}", file=sys.stderr, flush=True)
        self._last = time.monotonic()

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, description=self.description, note=self.note)
            self._bar.refresh()
        elif force or time.monotonic() - self._last >= PLAIN_EVERY_S:
            self._line()

    def advance(self, k: int = 1, note: str | None = None) -> None:
        """Count `k` more steps done; `note` replaces the short status after the bar."""
        self.completed += k
        if note is not None:
            self.note = note
        self._show()

    def describe(self, description: str | None = None, note: str | None = None) -> None:
        """Say what the job is doing now, without counting a step."""
        if description is not None:
            changed = description != self.description
            self.description = description
            if changed and self._bar is None and self.enabled:
                self._line()
        if note is not None:
            self.note = note
        self._show()

    def close(self) -> None:
        """End the display (a final plain line says where the job stopped)."""
        if not self.enabled:
            return
        self.enabled = False
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed)
            self._bar.refresh()
            self._bar.stop()
        else:
            self.note = "done" if self.completed >= self.total else self.note
            self._line()
