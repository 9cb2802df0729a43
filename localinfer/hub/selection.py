"""Which files of a repo a handler needs: weights, config, tokenizer — nothing else.

Repos often carry the same weights several times (safetensors, a pickled ``.bin``,
ONNX, TensorFlow, Flax, an ``original/`` checkpoint). Fetching only what the handlers
load saves gigabytes, and never fetching a pickle when safetensors exist keeps
``torch.load`` of untrusted files out of the picture.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch

from localinfer.errors import ConfigurationError

#: what a plain ``org/name`` repo id downloads (catalog entries name their own patterns)
DEFAULT_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.jinja",
    "*.bin",
)

#: never fetched unless a catalog pattern asks for them by name (``voices/*.onnx``): other
#: frameworks' copies of the weights, and duplicate checkpoints
IGNORED_PATTERNS: tuple[str, ...] = (
    "onnx/*",
    "openvino/*",
    "original/*",
    "coreml/*",
    "*.onnx",
    "*.onnx_data",
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.tflite",
    "*.mlmodel",
)

#: pickled weights: dropped whenever the selection has safetensors
PICKLE_PATTERNS: tuple[str, ...] = (
    "*.bin",
    "*.bin.index.json",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
)

#: files that hold weights: a selection without any has nothing to load
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")


def _matches(path: str, patterns: Iterable[str]) -> bool:
    # fnmatch, as huggingface-hub's own ``allow_patterns`` (``*`` crosses ``/``)
    return any(fnmatch(path, pattern) for pattern in patterns)


def select_files(repo_files: Sequence[str], patterns: Sequence[str] = ()) -> list[str]:
    """The files of ``repo_files`` to download, given glob ``patterns`` (default: weights,
    config, tokenizer). Raise when a GGUF-only repo would need a file to be chosen."""
    allow = tuple(patterns) or DEFAULT_PATTERNS
    # a pattern that is itself an ignored kind (``onnx/model.onnx``) is what its handler loads
    named = tuple(pattern for pattern in allow if _matches(pattern, IGNORED_PATTERNS))
    chosen = [
        path
        for path in repo_files
        if _matches(path, allow) and (not _matches(path, IGNORED_PATTERNS) or _matches(path, named))
    ]
    if any(path.endswith(".safetensors") for path in chosen):
        chosen = [path for path in chosen if not _matches(path, PICKLE_PATTERNS)]
    if not patterns and not any(_matches(path, _WEIGHTS) for path in chosen):
        ggufs = sorted(path for path in repo_files if path.endswith(".gguf"))
        if ggufs:
            listed = ", ".join(ggufs[:5]) + (", ..." if len(ggufs) > 5 else "")
            raise ConfigurationError(
                f"this repo only has GGUF weights ({listed}): add a catalog entry naming "
                "the one to use (filename = ...) in catalog.toml"
            )
    return sorted(chosen)


def exact_patterns(paths: Iterable[str]) -> list[str]:
    """Patterns matching exactly ``paths`` (``[`` and friends escaped)."""
    return [glob.escape(path) for path in paths]


def entry_patterns(files: Sequence[str], filename: str | None = None) -> tuple[str, ...]:
    """A catalog entry's patterns: its ``files`` globs plus its single ``filename``, if any."""
    return (*files, *((glob.escape(filename),) if filename else ()))
