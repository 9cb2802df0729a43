"""From what a user typed (alias, repo id, local path) to a servable model definition."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from localinfer.config import IsolatedPriority
from localinfer.errors import (
    ConfigurationError,
    ModelNotDownloaded,
    ModelNotFound,
)
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import CHAT, EMBEDDINGS, IMAGE_INPUT, RERANK, TRANSCRIPTION
from localinfer.hub.cache import cached_snapshot
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.model_ids import is_repo_id
from localinfer.hub.packaged import packaged_path
from localinfer.hub.selection import entry_patterns
from localinfer.hub.user_catalog import USER_ORIGIN
from localinfer.plugins import HandlerSpec, PluginSet
from localinfer.runtime.isolated_child import HandlerRecipe
from localinfer.runtime.isolation import isolated
from localinfer.runtime.job import DEFAULT_STREAM_BUFFER
from localinfer.runtime.model import ModelDefinition
from localinfer.slower_path import take_slower_path

logger = logging.getLogger(__name__)

#: micro-batching defaults per task, when the handler class declares none
_BATCHING = {EMBEDDINGS: (64, 20.0), TRANSCRIPTION: (8, 10.0), CHAT: (1, 0.0)}

_ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "mpnet",
    "distilbert",
    "nomic_bert",
    "modernbert",
    "electra",
    "deberta-v2",
    "e5",
    "new",
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    task: str
    handler: HandlerSpec
    source: ModelSource
    entry: CatalogEntry | None = None


def detect_task(directory: Path) -> str:
    """The task a local model directory serves, judged from its files."""
    if any(directory.glob("*.gguf")):
        return CHAT
    if (directory / "modules.json").exists():
        return EMBEDDINGS
    config_path = directory / "config.json"
    if not config_path.exists():
        raise ConfigurationError(f"{directory} has no config.json: not a transformers model")
    config = json.loads(config_path.read_text())
    model_type = str(config.get("model_type", "")).lower()
    architectures = [str(a) for a in config.get("architectures") or []]
    if model_type == "whisper":
        return TRANSCRIPTION
    if any(
        a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"))
        for a in architectures
    ):
        return CHAT
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return RERANK  # a cross-encoder: scores (query, document) pairs
    if model_type in _ENCODER_TYPES or any(a.endswith("Model") for a in architectures):
        return EMBEDDINGS
    raise ConfigurationError(
        f"cannot tell which task {directory} serves (model_type={model_type!r}, "
        f"architectures={architectures}); name it in the catalog"
    )


def _local(path: Path, plugins: PluginSet, name: str) -> ResolvedModel:
    filename = None
    if path.is_file() and path.suffix == ".gguf":
        path, filename = path.parent, path.name
    elif path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        filename = ggufs[0].name if ggufs else None
    task = CHAT if filename else detect_task(path)
    return ResolvedModel(
        name=name,
        task=task,
        handler=_handler_for(path, task, plugins),
        source=ModelSource(str(path), filename=filename),
    )


def _handler_for(path: Path, task: str, plugins: PluginSet) -> HandlerSpec:
    """The task's default handler; for a chat model with a vision tower, the vision one."""
    config_path = path / "config.json"
    vision = task == CHAT and config_path.is_file()
    if vision and "vision_config" in json.loads(config_path.read_text()):
        for spec in plugins.handlers.values():
            if spec.task == CHAT and spec.capabilities.get(IMAGE_INPUT) == "true":
                return spec
    return plugins.handler_for_task(task)


def resolve(
    spec: str,
    plugins: PluginSet,
    *,
    trust_remote_code: bool = False,
    options: dict[str, Any] | None = None,
    allow_paths: bool = True,
) -> ResolvedModel:
    """Resolve a catalog alias, a local directory / ``.gguf`` file, or a cached repo id.

    A model that is not downloaded raises :class:`ModelNotDownloaded`. Names that come
    from requests rather than the command line pass ``allow_paths=False``.
    """
    options = options or {}
    entry = plugins.catalog.get(spec)
    if entry is not None:
        # the user's own catalog may turn remote code on for a model; a plugin's may not
        trust_remote_code = trust_remote_code or (
            entry.trust_remote_code and entry.origin == USER_ORIGIN
        )
        location, revision, filename = entry.repo, entry.revision, entry.filename
        packaged = packaged_path(entry.packaged) if entry.packaged else None
        if packaged is not None:  # shipped in an installed package: no download, no cache
            location, revision, filename = str(packaged), None, None
            if packaged.is_file():
                location, filename = str(packaged.parent), packaged.name
        elif not Path(location).exists():
            patterns = entry_patterns(entry.files, entry.filename)
            snapshot = cached_snapshot(entry.repo, entry.revision, patterns)
            if snapshot is None:
                raise _not_downloaded(spec, f"{spec!r} ({entry.repo})")
            location = str(snapshot)
        return ResolvedModel(
            name=spec,
            task=entry.task,
            handler=entry_handler(entry, plugins),
            source=ModelSource(
                location,
                revision=revision,
                filename=filename,
                trust_remote_code=trust_remote_code,
                options={**entry.options, **options},
            ),
            entry=entry,
        )
    path = Path(spec).expanduser()
    if allow_paths and path.exists():
        resolved = _local(path.resolve(), plugins, name=path.name or spec)
        return replace(
            resolved,
            source=replace(resolved.source, trust_remote_code=trust_remote_code, options=options),
        )
    if is_repo_id(spec):
        snapshot = cached_snapshot(spec)
        if snapshot is None:
            raise _not_downloaded(spec, repr(spec))
        resolved = _local(snapshot, plugins, name=spec)
        return replace(
            resolved,
            source=replace(resolved.source, trust_remote_code=trust_remote_code, options=options),
        )
    known = ", ".join(sorted(plugins.catalog))
    raise ModelNotFound(
        f"{spec!r} is neither a catalog alias ({known}), an existing path, "
        "nor an 'org/name' repo id"
    )


def entry_handler(entry: CatalogEntry, plugins: PluginSet) -> HandlerSpec:
    """The handler serving ``entry``: its own, or, when its own is not installed or misses a
    module it needs, its fallback if the operator allows the slower path (else a refusal
    naming what to install: a capability is never dropped silently)."""
    fallback = entry.fallback_handler
    if fallback is None:
        return plugins.handler(entry.handler)
    preferred = plugins.handlers.get(entry.handler)
    if preferred is None:
        why = f"handler {entry.handler!r} is not installed"
    elif missing := preferred.missing_modules():
        why = f"handler {entry.handler!r} needs {', '.join(missing)}, not installed"
    else:
        return preferred
    install = f" (pip install {entry.install})" if entry.install else ""
    take_slower_path(
        f"{entry.alias}: {why}",
        install=f"Install it{install}",
        slower=f"serve the model through {fallback!r} (several times slower)",
    )
    return plugins.handler(fallback)


def _not_downloaded(spec: str, what: str) -> ModelNotDownloaded:
    return ModelNotDownloaded(
        f"{what} is not in the local Hugging Face cache; download it with `localinfer pull {spec}`",
        model=spec,
        param="model",
    )


def model_definition(
    resolved: ResolvedModel,
    *,
    devices: Sequence[str] = ("cpu",),
    workers_per_device: int = 1,
    max_queue: int = 256,
    stream_buffer: int = DEFAULT_STREAM_BUFFER,
    max_batch_size: int | None = None,
    batch_window_ms: float | None = None,
    isolation: IsolatedPriority | None = None,
) -> ModelDefinition:
    """The runtime definition of a resolved model; its handler class is imported here.

    With ``isolation`` each worker's handler runs in a process of its own, at that
    priority (:mod:`localinfer.runtime.isolation`)."""
    cls = resolved.handler.load_class()
    default_size, default_window = _BATCHING.get(resolved.task, (1, 0.0))
    source = resolved.source

    def create(index: int, device: str) -> Any:
        return cls(source)  # type: ignore[call-arg]

    definition = ModelDefinition(
        name=resolved.name,
        create_handler=create,
        task=resolved.task,
        devices=tuple(devices),
        workers_per_device=workers_per_device,
        max_batch_size=max_batch_size or int(getattr(cls, "default_max_batch_size", default_size)),
        batch_window_ms=(
            batch_window_ms
            if batch_window_ms is not None
            else float(getattr(cls, "default_batch_window_ms", default_window))
        ),
        max_queue=max_queue,
        stream_buffer=stream_buffer,
        capabilities={
            **resolved.handler.capabilities,
            "task": resolved.task,
            "model": resolved.name,
            "handler": resolved.handler.name,
        },
    )
    if isolation is None:
        return definition
    return isolated(definition, HandlerRecipe(resolved.handler, source), isolation)
