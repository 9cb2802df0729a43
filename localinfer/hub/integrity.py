"""Is a model's file whole? Cheap structural checks, before a loader meets a bad file.

A truncated or corrupted file in the cache (an interrupted copy, a full disk, a bad
sector) makes the libraries fail deep inside a load with messages that name neither the
file nor the cure (``SafetensorError: Error while deserializing header``, a numpy
``mmap length is greater than file size``, ``expected value at line 1 column 1``). These
checks read only headers (safetensors, GGUF) or parse the small JSON files, and answer
with :class:`~localinfer.errors.CorruptModelFile`: the file, what is wrong, and the
command that fixes it. Corruption inside tensor data (bit flips) is not looked for: that
needs a hash of every byte.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path

from localinfer.errors import CorruptModelFile

#: a safetensors header larger than this is not one (the format caps it at 100 MB)
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
#: JSON files read by loaders (configs, tokenizers); others are left alone
_JSON_NAMES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "processor_config.json",
        "model.safetensors.index.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "added_tokens.json",
        "vocab.json",
    }
)
_GGUF_MAGIC = b"GGUF"


def fix_command(model: str | None) -> str:
    """What the user runs to fetch a whole copy again."""
    if model is None:
        return "replace the file with a whole copy"
    return f"run `localinfer rm {model}` then `localinfer pull {model}`"


def check_directory(directory: Path, model: str | None) -> None:
    """Check every weight and JSON file under ``directory`` (``model``: the alias or repo id
    whose cached copy it is, for the fix command; ``None`` for the user's own directory)."""
    check_files(
        (
            path
            for path in sorted(directory.rglob("*"))
            if path.name.endswith((".safetensors", ".gguf")) or path.name in _JSON_NAMES
        ),
        model,
    )


def check_files(paths: Iterable[Path], model: str | None) -> None:
    for path in paths:
        problem = file_problem(path)
        if problem is not None:
            raise CorruptModelFile(
                f"{path} {problem}: the model files are damaged (truncated or corrupted); "
                f"{fix_command(model)}",
                path=str(path),
            )


def file_problem(path: Path) -> str | None:
    """What is wrong with ``path``, or ``None`` if its structure is whole."""
    try:
        if not path.is_file():
            return None if not path.exists() else "is not a file"
        if path.name.endswith(".safetensors"):
            return _safetensors_problem(path)
        if path.name.endswith(".gguf"):
            return _gguf_problem(path)
        if path.name.endswith(".json"):
            return _json_problem(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"is truncated ({size} bytes, shorter than a safetensors header)"
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_SAFETENSORS_HEADER or 8 + length > size:
            return f"has a broken safetensors header (says {length} bytes, file has {size})"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, ValueError):
            return "has a safetensors header that is not valid JSON"
    if not isinstance(header, dict):
        return "has a safetensors header that is not a JSON object"
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(tensor["data_offsets"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            return f"has a safetensors header without valid data_offsets for {name!r}"
    expected = 8 + length + end
    if size < expected:
        return f"is truncated ({size} bytes of {expected})"
    return None


def _gguf_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(24)
    if len(head) < 24:
        return f"is truncated ({size} bytes, shorter than a GGUF header)"
    if head[:4] != _GGUF_MAGIC:
        return "is not a GGUF file (its first bytes are not 'GGUF')"
    try:
        from gguf import GGUFReader
    except ImportError:
        return None  # the header is all that can be checked without the gguf package
    try:
        GGUFReader(path)  # reads the metadata and maps every tensor: a short file fails
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        return f"is truncated or corrupted ({exc})"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        return f"is not valid JSON ({exc})"
    return None
