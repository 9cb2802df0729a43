"""The standard Hugging Face cache (``HF_HOME`` respected): find what is already there."""

from __future__ import annotations

from pathlib import Path


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot directory of ``repo_id`` if it is in the cache, else ``None``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
