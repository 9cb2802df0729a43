"""What the Hugging Face cache holds, and freeing it — through huggingface-hub's cache API.

``scan_cache_dir`` sees every model in the cache, whichever tool fetched it;
``delete_revisions`` removes snapshots, blobs no other revision shares, and the repo
folder once no revision is left. No file is deleted by hand here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from localinfer.errors import ModelNotFound
from localinfer.hub.dirs import hf_cache_dir

if TYPE_CHECKING:
    from huggingface_hub import CachedRepoInfo, HFCacheInfo


@dataclass(frozen=True)
class CachedRevision:
    commit: str
    refs: tuple[str, ...]
    path: Path
    size_bytes: int


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    size_bytes: int
    files: int
    revisions: tuple[CachedRevision, ...]
    last_accessed: float
    last_modified: float

    @property
    def snapshot(self) -> Path:
        """The snapshot to describe: the one ``main`` points to, else the newest."""
        for revision in self.revisions:
            if "main" in revision.refs:
                return revision.path
        return self.revisions[0].path


@dataclass(frozen=True)
class Removal:
    repo_id: str
    revisions: tuple[str, ...]
    freed_bytes: int


def _scan() -> HFCacheInfo | None:
    """The cache's contents, or ``None`` when there is no cache directory yet."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir(hf_cache_dir())
    except CacheNotFound:
        return None


def _cached_model(repo: CachedRepoInfo) -> CachedModel:
    revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
    return CachedModel(
        repo_id=repo.repo_id,
        size_bytes=repo.size_on_disk,
        files=repo.nb_files,
        revisions=tuple(
            CachedRevision(r.commit_hash, tuple(sorted(r.refs)), r.snapshot_path, r.size_on_disk)
            for r in revisions
        ),
        last_accessed=repo.last_accessed,
        last_modified=repo.last_modified,
    )


def cached_models() -> list[CachedModel]:
    """Every model repo in the cache that has at least one snapshot, by repo id."""
    scan = _scan()
    repos = [] if scan is None else scan.repos
    return sorted(
        (_cached_model(repo) for repo in repos if repo.repo_type == "model" and repo.revisions),
        key=lambda model: model.repo_id.lower(),
    )


def remove_cached(repo_id: str, revision: str | None = None) -> Removal:
    """Delete ``repo_id`` from the cache (every revision, or the one whose commit or ref is
    ``revision``); returns what was freed."""
    scan = _scan()
    repos = [] if scan is None else scan.repos
    repo = next((r for r in repos if r.repo_type == "model" and r.repo_id == repo_id), None)
    if scan is None or repo is None:
        raise ModelNotFound(f"{repo_id} is not in the Hugging Face cache ({hf_cache_dir()})")
    commits = [
        r.commit_hash
        for r in repo.revisions
        if revision is None or revision == r.commit_hash or revision in r.refs
    ]
    if not commits:
        raise ModelNotFound(f"{repo_id} has no cached revision {revision!r}")
    strategy = scan.delete_revisions(*commits)
    strategy.execute()
    return Removal(repo_id, tuple(commits), strategy.expected_freed_size)
