"""Downloads started through the API: huggingface-hub in a thread, progress on the loop.

huggingface-hub is synchronous, so each download runs in a daemon thread of its own.
Progress crosses back through the loop's thread-safe entry (``LoopHandle.call_soon``,
a few times a second); the loop only ever stores the latest snapshot and wakes the
readers, so it never blocks and a slow event-stream reader never holds a download up:
readers see the newest state, skipping those they were too slow for.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import anyio

from localinfer.errors import (
    DownloadCancelled,
    DownloadFailed,
    DownloadNotFound,
    LocalInferError,
    OfflineModeEnabled,
)
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.dirs import offline_mode
from localinfer.hub.download import (
    DownloadResult,
    DownloadTarget,
    download_model,
    download_target,
)
from localinfer.hub.model_ids import check_model_id
from localinfer.hub.progress import DownloadProgress
from localinfer.runtime.loop import LoopClosed, LoopHandle

logger = logging.getLogger(__name__)


class DownloadState:
    RUNNING = "running"
    CANCELLING = "cancelling"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    FINAL = frozenset({DONE, FAILED, CANCELLED})


class DownloadTask:
    """One download. Its state is read and changed on the loop only."""

    def __init__(self, target: DownloadTarget, loop: LoopHandle):
        self.id = uuid.uuid4().hex[:16]
        self.target = target
        self.state = DownloadState.RUNNING
        self.progress: DownloadProgress | None = None
        self.error: LocalInferError | None = None
        self.result: DownloadResult | None = None
        self.created_at = time.time()
        self.finished_at: float | None = None
        self._loop = loop
        self._cancel = threading.Event()
        self._changed = anyio.Event()

    @property
    def finished(self) -> bool:
        return self.state in DownloadState.FINAL

    def start(self, *, offline: bool) -> None:
        thread = threading.Thread(
            target=self._main,
            args=(offline,),
            name=f"localinfer:download:{self.target.repo_id}",
            daemon=True,
        )
        thread.start()

    def cancel(self) -> None:
        if not self.finished:
            self._cancel.set()
            self.state = DownloadState.CANCELLING
            self._notify()

    # -- in the download thread ----------------------------------------------------------

    def _main(self, offline: bool) -> None:
        result: DownloadResult | None = None
        error: LocalInferError | None = None
        try:
            result = download_model(
                self.target, on_progress=self._post_progress, cancel=self._cancel, offline=offline
            )
        except LocalInferError as exc:
            error = exc
        except Exception as exc:  # a bug, not the Hub: still the task's failure, not silence
            logger.exception("download %s crashed", self.id)
            error = DownloadFailed(f"{type(exc).__name__}: {exc}")
        self._post(self._settle, result, error)

    def _post_progress(self, progress: DownloadProgress) -> None:
        self._post(self._on_progress, progress)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon(fn, *args)
        except LoopClosed:
            self._cancel.set()  # the server is gone: stop fetching

    # -- on the loop ---------------------------------------------------------------------

    def _on_progress(self, progress: DownloadProgress) -> None:
        if not self.finished:
            self.progress = progress
            self._notify()

    def _settle(self, result: DownloadResult | None, error: LocalInferError | None) -> None:
        if isinstance(error, DownloadCancelled):
            self.state = DownloadState.CANCELLED
        elif error is not None:
            self.state, self.error = DownloadState.FAILED, error
            logger.warning("download %s (%s) failed: %s", self.id, self.target.name, error)
        else:
            self.state, self.result = DownloadState.DONE, result
        self.finished_at = time.time()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def snapshot(self) -> dict[str, Any]:
        """The task as the API shows it."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "download",
            "model": self.target.name,
            "repo_id": self.target.repo_id,
            "revision": self.target.revision,
            "state": self.state,
            "progress": None if self.progress is None else self.progress.as_dict(),
            "created_at": round(self.created_at, 3),
            "finished_at": None if self.finished_at is None else round(self.finished_at, 3),
            "error": None,
            "path": None,
        }
        if self.error is not None:
            body["error"] = {"message": self.error.message, "code": self.error.code}
        if self.result is not None:
            body["path"] = str(self.result.path)
            body["progress"] = {
                **(body["progress"] or {}),
                "done_bytes": self.result.total_bytes,
                "total_bytes": self.result.total_bytes,
                "fraction": 1.0,
            }
        return body

    async def updates(self) -> AsyncIterator[dict[str, Any]]:
        """The task's snapshot now and after every change, until it is finished."""
        while True:
            changed = self._changed
            yield self.snapshot()
            if self.finished:
                return
            await changed.wait()


class DownloadManager:
    """The server's downloads, by id. Use as ``async with DownloadManager(...)`` on the loop."""

    def __init__(
        self,
        catalog: Mapping[str, CatalogEntry],
        *,
        offline: bool = False,
        keep_finished: int = 100,
    ):
        self.catalog = catalog
        self.offline = offline
        self.keep_finished = keep_finished
        self._tasks: dict[str, DownloadTask] = {}
        self._loop: LoopHandle | None = None

    async def __aenter__(self) -> DownloadManager:
        self._loop = LoopHandle.current()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks.values():
            task.cancel()  # the threads stop at their next chunk; nothing waits for them

    def start(self, spec: str, *, revision: str | None = None) -> tuple[DownloadTask, bool]:
        """Start downloading ``spec`` (``(task, True)``), or return the download of the same
        repo and revision already running (``(task, False)``)."""
        if self._loop is None:
            raise RuntimeError("DownloadManager used outside 'async with'")
        check_model_id(spec)
        target = download_target(spec, self.catalog, revision=revision)
        if offline_mode(self.offline):
            raise OfflineModeEnabled(
                f"cannot download {spec}: the server runs offline (--offline or HF_HUB_OFFLINE=1)"
            )
        for task in self._tasks.values():
            same = (task.target.repo_id, task.target.revision, task.target.patterns)
            if not task.finished and same == (target.repo_id, target.revision, target.patterns):
                return task, False
        task = DownloadTask(target, self._loop)
        self._tasks[task.id] = task
        self._forget_old()
        task.start(offline=self.offline)
        logger.info("download %s: %s (%s)", task.id, spec, target.repo_id)
        return task, True

    def _forget_old(self) -> None:
        finished = [task for task in self._tasks.values() if task.finished]
        for task in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._tasks[task.id]

    def get(self, download_id: str) -> DownloadTask:
        try:
            return self._tasks[download_id]
        except KeyError:
            raise DownloadNotFound(
                f"no download has the id {download_id[:64]!r}", param="id"
            ) from None

    def __iter__(self) -> Iterator[DownloadTask]:
        return iter(list(self._tasks.values()))
