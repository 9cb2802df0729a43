"""GGUF checkpoints for transformers, dequantised once and kept as a dense checkpoint.

transformers reads a ``.gguf`` by unpacking every tensor and rebuilding the tokenizer
from the file's metadata, at every load: ~20 s for a 135M model on two CPU cores. The
first load writes the result as an ordinary checkpoint (safetensors, config, generation
config, tokenizer with its chat template) to
``platformdirs.user_cache_dir("localinfer")/gguf/<key>/<dtype>``; later loads read that
directory in about a second. ``<key>`` hashes the file's resolved path, size and mtime,
so a replaced file is converted again; ``<dtype>`` keeps a float32 copy for CPUs apart
from a bfloat16 one for GPUs (a 7B model in float32 would be 28 GB).

A conversion runs under a file lock: two workers (or two servers) starting at once
convert once, and a directory only appears complete, by an atomic rename.

The cache is bounded (``gguf_cache_max_bytes``): each use touches the copy's manifest, and
after a conversion the least recently used copies are removed until the rest fit (never
the one just made, nor one whose lock another process holds). ``localinfer ls`` shows
the copies and their total.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localinfer.errors import ConfigurationError
from localinfer.handlers.hub_code import NO_HUB_CODE

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: written last into a converted directory: what it was made from
MANIFEST = "localinfer-gguf.json"


def cache_root() -> Path:
    """Where converted checkpoints live (``XDG_CACHE_HOME`` moves it on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("localinfer")) / "gguf"


def cache_key(gguf_file: Path) -> str:
    """A hash of the file's resolved path, size and modification time."""
    path = gguf_file.resolve()
    stat = path.stat()
    identity = f"{path}\n{stat.st_size}\n{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.float32`` -> ``"float32"``; ``"auto"`` stays ``"auto"``."""
    return str(dtype).removeprefix("torch.")


def converted_directory(gguf_file: Path, dtype: torch.dtype | str) -> Path:
    return cache_root() / cache_key(gguf_file) / dtype_name(dtype)


def locate_gguf(location: str, filename: str, revision: str | None = None) -> Path:
    """The ``.gguf`` file of a source: inside a local directory, or a cached hub repo."""
    directory = Path(location)
    if directory.is_dir():
        path = directory / filename
        if not path.is_file():
            raise ConfigurationError(f"{filename} is not in {directory}")
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # downloading is the hub layer's job: only the local cache is read here
        return Path(hf_hub_download(location, filename, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"{location}/{filename} is not in the local Hugging Face cache: {exc}"
        ) from exc


def dense_checkpoint(gguf_file: Path, dtype: torch.dtype | str) -> Path:
    """A directory holding ``gguf_file`` as a dense transformers checkpoint in ``dtype``.

    Converts on the first call for this file and dtype; afterwards returns the cached copy.
    """
    from filelock import FileLock

    target = converted_directory(gguf_file, dtype)
    if (target / MANIFEST).is_file():
        _touch(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MANIFEST).is_file():  # another process converted it meanwhile
            return target
        started = time.perf_counter()
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
        try:
            _convert(gguf_file, dtype, partial)
            if target.exists():  # left by an interrupted older layout: not complete
                shutil.rmtree(target)
            os.replace(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    logger.info(
        "converted %s to a %s checkpoint in %.1f s (cached in %s)",
        gguf_file.name,
        dtype_name(dtype),
        time.perf_counter() - started,
        target,
    )
    prune(max_bytes(), keep=target)
    return target


@dataclass(frozen=True)
class ConvertedCopy:
    """One converted checkpoint in the cache."""

    directory: Path
    source: str
    dtype: str
    size_bytes: int
    #: when it was last loaded (its manifest's mtime), seconds since the epoch
    last_used: float


def converted_copies() -> list[ConvertedCopy]:
    """Every complete converted copy, least recently used first."""
    root = cache_root()
    copies = []
    for manifest in root.glob(f"*/*/{MANIFEST}") if root.is_dir() else ():
        directory = manifest.parent
        try:
            meta = json.loads(manifest.read_text())
            size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
            used = manifest.stat().st_mtime
        except (OSError, ValueError):
            continue
        copies.append(
            ConvertedCopy(
                directory,
                str(meta.get("source", "?")),
                str(meta.get("dtype", directory.name)),
                size,
                used,
            )
        )
    return sorted(copies, key=lambda c: c.last_used)


def max_bytes() -> int | None:
    """The cache's bound, from the settings (``gguf_cache_max_bytes``)."""
    from localinfer.config import load_settings

    return load_settings().gguf_cache_max_bytes


def prune(limit: int | None, keep: Path | None = None) -> list[ConvertedCopy]:
    """Remove least recently used copies until the rest fit in ``limit`` bytes; the
    removed ones. ``keep`` and copies locked by a conversion are never removed."""
    from filelock import FileLock, Timeout

    if limit is None:
        return []
    copies = converted_copies()
    total = sum(c.size_bytes for c in copies)
    removed = []
    for copy in copies:
        if total <= limit:
            break
        if keep is not None and copy.directory == keep:
            continue
        try:
            with FileLock(str(copy.directory) + ".lock", timeout=0):
                shutil.rmtree(copy.directory, ignore_errors=True)
        except Timeout:
            continue
        total -= copy.size_bytes
        removed.append(copy)
        logger.info(
            "gguf cache over %d bytes: removed the copy of %s (%s, last used %s)",
            limit,
            copy.source,
            copy.dtype,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(copy.last_used)),
        )
    return removed


def _touch(directory: Path) -> None:
    """Mark a copy as used now (the pruning order)."""
    try:
        os.utime(directory / MANIFEST)
    except OSError:
        pass  # a read-only cache still serves


def _convert(gguf_file: Path, dtype: torch.dtype | str, out: Path) -> None:
    """Dequantise the weights, rebuild the tokenizer, save both, then the manifest."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    common: dict[str, Any] = {"gguf_file": gguf_file.name, "local_files_only": True}
    directory = str(gguf_file.parent)
    tokenizer = AutoTokenizer.from_pretrained(directory, **common)
    model = AutoModelForCausalLM.from_pretrained(
        directory,
        dtype=dtype,
        # unpack every weight into a plain dense model, which saves as usual
        quantization_config=GgufConfig(gguf_file=gguf_file.name, dequantize=True),
        **common,
        **NO_HUB_CODE,
    )
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    stat = gguf_file.stat()
    manifest = {
        "source": str(gguf_file.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "dtype": dtype_name(model.dtype),
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
