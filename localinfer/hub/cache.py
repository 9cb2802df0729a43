"""The standard Hugging Face cache (``HF_HOME`` respected): find what is already there.

Nothing here touches the network. A snapshot counts as cached only when every file a
download would fetch is present: huggingface-hub keeps the repo's file list next to
the snapshot (``trees/<commit>.json``), and the same selection as the download's is
checked against it, so an interrupted pull is never mistaken for a complete one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from localinfer.errors import ConfigurationError
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.dirs import hf_cache_dir
from localinfer.hub.model_ids import is_repo_id
from localinfer.hub.packaged import packaged_path
from localinfer.hub.selection import entry_patterns, exact_patterns, select_files

#: what a snapshot without a recorded file list must hold to be worth loading
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def cached_repo_files(repo_id: str, revision: str | None = None) -> list[str] | None:
    """The repo's file list recorded by the last download, or ``None`` when there is none."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = get_cached_repo_tree(repo_id, revision=revision, cache_dir=hf_cache_dir())
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return None
    return [entry.path for entry in tree]


def cached_snapshot(
    repo_id: str, revision: str | None = None, patterns: Sequence[str] = ()
) -> Path | None:
    """The local snapshot directory of ``repo_id`` if it holds what ``patterns`` select."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    files = cached_repo_files(repo_id, revision)
    try:
        wanted = None if files is None else exact_patterns(select_files(files, patterns))
    except ConfigurationError:
        return None
    try:
        snapshot = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=hf_cache_dir(),
                local_files_only=True,
                allow_patterns=wanted,
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    if files is None and not _has_weights(snapshot):
        return None  # fetched by another tool, config only (AutoConfig, for instance)
    return snapshot


def _has_weights(snapshot: Path) -> bool:
    return any(
        path.name.endswith(_WEIGHT_SUFFIXES) for path in snapshot.rglob("*") if path.is_file()
    )


def available_locally(entry: CatalogEntry) -> bool:
    """Whether ``entry`` can be served without a download: packaged, local, or cached."""
    try:
        if entry.packaged and packaged_path(entry.packaged) is not None:
            return True
    except ConfigurationError:
        pass
    if not is_repo_id(entry.repo):
        return Path(entry.repo).exists()
    patterns = entry_patterns(entry.files, entry.filename)
    return cached_snapshot(entry.repo, entry.revision, patterns) is not None
