"""Download progress: counted from huggingface-hub's own progress bars, shown anywhere.

``snapshot_download`` accepts a ``tqdm_class``; it builds its byte bars and its file bar
from it and feeds every file's bytes into them from its download threads. The class
made by :meth:`ProgressTracker.bar_class` draws nothing: it counts, hands a
:class:`DownloadProgress` to a callback (a rich bar, a tqdm.auto bar, the server's
event stream), and is also where a cancelled download stops — at its next chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localinfer.errors import DownloadCancelled

if TYPE_CHECKING:
    from tqdm.std import tqdm


@dataclass(frozen=True)
class DownloadProgress:
    """How far one model's download is. Sizes come from the repo listing, so the total
    is known before the first byte arrives."""

    repo_id: str
    total_bytes: int
    done_bytes: int
    files_total: int
    files_done: int
    elapsed_s: float
    finished: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_bytes <= 0 else min(1.0, self.done_bytes / self.total_bytes)

    @property
    def bytes_per_second(self) -> float:
        return self.done_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "total_bytes": self.total_bytes,
            "done_bytes": self.done_bytes,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "fraction": round(self.fraction, 4),
            "bytes_per_second": round(self.bytes_per_second),
            "elapsed_s": round(self.elapsed_s, 3),
        }


ProgressCallback = Callable[[DownloadProgress], None]


class ProgressTracker:
    """Thread-safe counts for one download, reported at most every ``interval_s``."""

    def __init__(
        self,
        repo_id: str,
        *,
        total_bytes: int,
        files_total: int,
        cached_bytes: int = 0,
        callback: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        interval_s: float = 0.1,
    ):
        self.repo_id = repo_id
        self.total_bytes = total_bytes
        self.files_total = files_total
        self.cancel = cancel or threading.Event()
        self._cached_bytes = cached_bytes
        self._callback = callback
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._byte_bars: dict[int, int] = {}
        self._files_done = 0
        self._started = time.monotonic()
        self._reported_at = 0.0

    def snapshot(self, *, finished: bool = False) -> DownloadProgress:
        with self._lock:
            # every byte bar sees the same bytes (network / written to disk): take the
            # furthest, never their sum
            fetched = max(self._byte_bars.values(), default=0)
            files_done = self._files_done  # cached files tick too, as they are found
        return DownloadProgress(
            repo_id=self.repo_id,
            total_bytes=self.total_bytes,
            done_bytes=self.total_bytes if finished else self._cached_bytes + fetched,
            files_total=self.files_total,
            files_done=self.files_total if finished else min(files_done, self.files_total),
            elapsed_s=time.monotonic() - self._started,
            finished=finished,
        )

    def start(self) -> None:
        """Report the starting point (cached files count as done); raise if cancelled."""
        self._raise_if_cancelled()
        self._reported_at = time.monotonic()
        self.report()

    def _raise_if_cancelled(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelled(f"the download of {self.repo_id} was cancelled")

    def advance(self, bar: int, n: float, *, counts_bytes: bool) -> None:
        """Count ``n`` more on ``bar``; raise :class:`DownloadCancelled` once cancelled."""
        self._raise_if_cancelled()
        with self._lock:
            if counts_bytes:
                self._byte_bars[bar] = max(0, self._byte_bars.get(bar, 0) + int(n))
            else:
                self._files_done += int(n)
            now = time.monotonic()
            due = now - self._reported_at >= self._interval_s
            if due:
                self._reported_at = now
        if due:
            self.report()

    def report(self, *, finished: bool = False) -> None:
        if self._callback is not None:
            with self._report_lock:  # one report at a time: consumers see progress in order
                self._callback(self.snapshot(finished=finished))

    def bar_class(self) -> type[tqdm]:
        """A ``tqdm_class`` for ``snapshot_download`` that feeds this tracker."""
        from tqdm.std import tqdm

        tracker = self

        class CountingBar(tqdm):  # type: ignore[misc]  # tqdm has no type hints
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._counts_bytes = kwargs.get("unit") == "B"
                kwargs["disable"] = True  # count, never draw
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> None:
                tracker.advance(id(self), n or 0, counts_bytes=self._counts_bytes)
                super().update(n)

        return CountingBar


class TqdmDisplay:
    """A tqdm.auto bar (a widget in notebooks, text in terminals) fed by progress reports."""

    def __init__(self, description: str):
        self._description = description
        self._bar: Any = None
        self._lock = threading.Lock()

    def __call__(self, progress: DownloadProgress) -> None:
        from tqdm.auto import tqdm as auto_tqdm

        with self._lock:
            if self._bar is None:
                self._bar = auto_tqdm(
                    total=progress.total_bytes,
                    desc=self._description,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                )
            self._bar.update(progress.done_bytes - self._bar.n)
            if progress.finished:
                self._bar.close()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
