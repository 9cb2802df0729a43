"""Downloads into the standard Hugging Face cache, through huggingface-hub.

A download is planned first (the repo's commit and file list, one listing call), so
only the files a handler needs are fetched and the total size is known up front.
``snapshot_download`` then fetches them into the shared cache (models fetched by other
tools are reused, ``HF_HOME`` is honoured) and records the file list that
:func:`localinfer.hub.cache.cached_snapshot` checks completeness against.

Resuming: a dropped connection is resumed in place with a ``Range`` request by
huggingface-hub; a download stopped half-way (cancelled, killed) keeps every finished
file, and the next pull fetches only the rest.

Everything here blocks: call it from a thread (the server does), or through
:func:`pull`, which keeps Ctrl-C (or a notebook's interrupt) working while it waits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from localinfer.errors import (
    DiskFull,
    DownloadFailed,
    InvalidRequest,
    LocalInferError,
    ModelNotFound,
    OfflineModeEnabled,
)
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.dirs import hf_cache_dir, hf_endpoint, offline_mode
from localinfer.hub.model_ids import check_revision, is_repo_id
from localinfer.hub.progress import ProgressCallback, ProgressTracker, TqdmDisplay
from localinfer.hub.selection import entry_patterns, exact_patterns, select_files

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class DownloadTarget:
    """What to fetch for a name a user typed: a repo, a revision, the files' patterns."""

    name: str
    repo_id: str
    revision: str | None = None
    #: glob patterns (empty: the default selection for a plain repo id)
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class DownloadPlan:
    target: DownloadTarget
    commit: str
    #: selected file -> size in bytes
    files: Mapping[str, int]
    #: selected files already in the cache
    cached: frozenset[str]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @property
    def cached_bytes(self) -> int:
        return sum(self.files[path] for path in self.cached)


@dataclass(frozen=True)
class DownloadResult:
    name: str
    repo_id: str
    path: Path
    files: tuple[str, ...]
    total_bytes: int
    fetched_bytes: int
    elapsed_s: float


def download_target(
    spec: str, catalog: Mapping[str, CatalogEntry], *, revision: str | None = None
) -> DownloadTarget:
    """The download for a catalog alias or an ``org/name`` repo id (never a path)."""
    if revision is not None:
        check_revision(revision)
    entry = catalog.get(spec)
    if entry is not None:
        if not is_repo_id(entry.repo):
            raise InvalidRequest(
                f"{spec!r} is served from {entry.repo}, not from the Hub: nothing to download",
                param="model",
            )
        return DownloadTarget(
            name=spec,
            repo_id=entry.repo,
            revision=revision or entry.revision,
            patterns=entry_patterns(entry.files, entry.filename),
        )
    if is_repo_id(spec):
        return DownloadTarget(name=spec, repo_id=spec, revision=revision)
    known = ", ".join(sorted(catalog)) or "none"
    raise ModelNotFound(
        f"{spec[:200]!r} is neither a catalog alias ({known}) nor an 'org/name' repo id",
        param="model",
    )


def plan_download(target: DownloadTarget) -> DownloadPlan:
    """Ask the Hub for the commit and file list; pick the files; see which are cached."""
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hf_endpoint())
    info = api.repo_info(target.repo_id, revision=target.revision)
    if not info.sha:
        raise DownloadFailed(f"the Hub gave no commit for {target.repo_id}")
    sizes = {
        item.path: int(item.size)
        for item in api.list_repo_tree(target.repo_id, revision=info.sha, recursive=True)
        if isinstance(item, RepoFile)
    }
    chosen = select_files(list(sizes), target.patterns)
    if not chosen:
        raise DownloadFailed(
            f"no file of {target.repo_id} matches {', '.join(target.patterns) or 'the defaults'}"
        )
    cache_dir = hf_cache_dir()
    cached = frozenset(
        path
        for path in chosen
        if isinstance(
            try_to_load_from_cache(target.repo_id, path, cache_dir=cache_dir, revision=info.sha),
            str,
        )
    )
    return DownloadPlan(target, info.sha, {path: sizes[path] for path in chosen}, cached)


def download_model(
    target: DownloadTarget,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    offline: bool = False,
    max_workers: int = 4,
) -> DownloadResult:
    """Fetch ``target`` into the cache, reporting progress; blocks the calling thread.

    Raises :class:`~localinfer.errors.DownloadCancelled` soon after ``cancel`` is set
    (at the next chunk any file receives).
    """
    if offline_mode(offline):
        raise OfflineModeEnabled(
            f"cannot download {target.name}: downloads are off (--offline or HF_HUB_OFFLINE=1)"
        )
    from huggingface_hub import snapshot_download

    started = time.monotonic()
    with _as_localinfer_errors(target):
        plan = plan_download(target)
        _check_free_space(target, plan.total_bytes - plan.cached_bytes)
        tracker = ProgressTracker(
            target.repo_id,
            total_bytes=plan.total_bytes,
            files_total=len(plan.files),
            cached_bytes=plan.cached_bytes,
            callback=on_progress,
            cancel=cancel,
        )
        tracker.start()
        path = snapshot_download(
            target.repo_id,
            revision=target.revision,
            cache_dir=hf_cache_dir(),
            endpoint=hf_endpoint(),
            allow_patterns=exact_patterns(plan.files),
            tqdm_class=tracker.bar_class(),
            max_workers=max_workers,
        )
    tracker.report(finished=True)
    elapsed = time.monotonic() - started
    logger.info(
        "downloaded %s (%s, %d files, %d bytes) in %.1f s",
        target.name,
        target.repo_id,
        len(plan.files),
        plan.total_bytes,
        elapsed,
    )
    return DownloadResult(
        name=target.name,
        repo_id=target.repo_id,
        path=Path(path),
        files=tuple(plan.files),
        total_bytes=plan.total_bytes,
        fetched_bytes=plan.total_bytes - plan.cached_bytes,
        elapsed_s=elapsed,
    )


@contextlib.contextmanager
def _as_localinfer_errors(target: DownloadTarget) -> Iterator[None]:
    """huggingface-hub's and httpx's exceptions, told in the project's hierarchy."""
    where = f"{target.repo_id} ({hf_endpoint()})"
    try:
        yield
    except LocalInferError:
        raise
    except Exception as exc:
        if not _disk_full(exc):
            raise _told(exc, where, target) from exc
        removed = _remove_partial_files(target.repo_id)
        raise DiskFull(
            f"downloading {target.repo_id} stopped: the disk holding the model cache "
            f"({hf_cache_dir()}) is full. {removed} partial file(s) removed; nothing of this "
            "download counts as cached. Free space (`localinfer ls`, `localinfer rm MODEL`) "
            "or point HF_HOME at a larger disk, then pull again"
        ) from exc


def _told(exc: Exception, where: str, target: DownloadTarget) -> LocalInferError:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return ModelNotFound(f"{where} has no revision {target.revision!r}", param="model")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFound(
            f"{where} was not found; a private or gated repo needs a token "
            "(`hf auth login` or HF_TOKEN)",
            param="model",
        )
    return DownloadFailed(f"downloading {where} failed: {type(exc).__name__}: {exc}")


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is "no space left on device"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def _check_free_space(target: DownloadTarget, needed: int) -> None:
    """Refuse before the first byte when the files cannot fit."""
    directory = hf_cache_dir()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if needed > free:
        raise DiskFull(
            f"cannot download {target.repo_id}: it needs {needed} bytes and the disk holding "
            f"the model cache ({hf_cache_dir()}) has {free} free. Free space (`localinfer "
            "ls`, `localinfer rm MODEL`) or point HF_HOME at a larger disk"
        )


def _remove_partial_files(repo_id: str) -> int:
    """Delete the repo's unfinished blobs (``*.incomplete``): on a full disk, resuming
    them later is worth less than the room they take now."""
    folder = "models--" + repo_id.replace("/", "--")
    removed = 0
    for partial in (hf_cache_dir() / folder / "blobs").glob("*.incomplete"):
        with contextlib.suppress(OSError):
            partial.unlink()
            removed += 1
    return removed


def pull(
    spec: str,
    *,
    catalog: Mapping[str, CatalogEntry],
    revision: str | None = None,
    on_progress: ProgressCallback | None = None,
    offline: bool = False,
) -> DownloadResult:
    """Download a catalog model or repo into the HF cache, from Python or a notebook.

    ``catalog`` is the merged one (built-ins, plugins, the user's file): pass
    ``localinfer.plugins.discover().catalog``, or call ``localinfer.pull``, which does.

    Shows a tqdm.auto bar unless ``on_progress`` is given. Interrupting (Ctrl-C, a
    notebook's stop button) cancels the download instead of waiting for it.
    """
    target = download_target(spec, catalog, revision=revision)
    display = None
    if on_progress is None:
        display = on_progress = TqdmDisplay(target.name)
    try:
        return run_cancellable(
            lambda cancel: download_model(
                target, on_progress=on_progress, cancel=cancel, offline=offline
            )
        )
    finally:
        if display is not None:
            display.close()


def run_cancellable(work: Callable[[threading.Event], T]) -> T:
    """Run ``work(cancel)`` in a thread; a KeyboardInterrupt here sets ``cancel`` and waits
    for the thread to notice, so no download is left running behind the prompt."""
    cancel = threading.Event()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def main() -> None:
        try:
            outcome.append(work(cancel))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=main, name="localinfer:download", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        cancel.set()
        thread.join(30)
        raise
    if failure:
        raise failure[0]
    return outcome[0]
