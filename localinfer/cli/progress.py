"""Download progress at the command line: a rich bar in a terminal, plain lines elsewhere.

Output that is not a terminal (a pipe, a log, ``!localinfer pull`` in a notebook cell)
gets one line per tenth of the download instead of a redrawn bar.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from localinfer.hub.progress import DownloadProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


class DownloadDisplay:
    """``with DownloadDisplay(name) as show: download_model(..., on_progress=show)``.

    Called from download threads; rich's own lock makes the updates safe.
    """

    def __init__(self, name: str, stream: TextIO | None = None):
        self.name = name
        self.stream = stream or sys.stderr
        self._rich: Progress | None = None
        self._task: TaskID | None = None
        self._lock = threading.Lock()
        self._printed_tenth = -1

    def __enter__(self) -> DownloadDisplay:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._rich.start()
            self._task = self._rich.add_task(self.name, total=None)
        return self

    def __call__(self, progress: DownloadProgress) -> None:
        if self._rich is not None and self._task is not None:
            self._rich.update(self._task, total=progress.total_bytes, completed=progress.done_bytes)
            return
        tenth = int(progress.fraction * 10)
        with self._lock:
            if tenth <= self._printed_tenth:
                return
            self._printed_tenth = tenth
        print(
            f"{self.name}: {tenth * 10:3d}% ({human_bytes(progress.done_bytes)} of "
            f"{human_bytes(progress.total_bytes)}, {progress.files_done}/{progress.files_total}"
            " files)",
            file=self.stream,
            flush=True,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.stop()
