"""A handler's model files checked whole before its loader reads them (see
:mod:`localinfer.hub.integrity`): a damaged cache is an error naming the file and the
fix, not a crash deep inside a library."""

from __future__ import annotations

from pathlib import Path

from localinfer.handlers.base import ModelSource
from localinfer.hub.integrity import check_directory, check_files


def verify_model_files(source: ModelSource) -> None:
    """Raise :class:`~localinfer.errors.CorruptModelFile` if a file of ``source`` is
    truncated or corrupted. A source not found locally is left to the loader's own error."""
    path = Path(source.location).expanduser()
    if path.is_file():
        check_files([path], None)
        return
    model: str | None = None
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        try:
            path = Path(
                snapshot_download(source.location, revision=source.revision, local_files_only=True)
            )
        except Exception:  # not cached, an invalid id: the loader says so
            return
        model = source.location
    if source.filename:
        others = [p for p in path.iterdir() if p.name.endswith(".json")]
        check_files([path / source.filename, *sorted(others)], model)
    else:
        check_directory(path, model)
