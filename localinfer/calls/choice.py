"""Which served model answers a request for a task.

A request names its model, selects one by capability (``{"lang": "en"}``; the task is
implied), or — in process, where there is no OpenAI client insisting on a name — names
none when exactly one model serves the task. The rule "model X serves task Y, not Z"
itself lives with the registry (:meth:`ModelRegistry.acquire`), which also applies it
to models it loads on demand.
"""

from __future__ import annotations

from collections.abc import Mapping

from localinfer.errors import InvalidRequest, ModelNotDownloaded, ModelNotFound
from localinfer.runtime.model import ServedModel
from localinfer.runtime.registry import ModelRegistry


def model_for_task(
    registry: ModelRegistry,
    name: str | None,
    task: str,
    wanted: Mapping[str, str] | None = None,
) -> ServedModel:
    """The served model for ``task``: by capability (``wanted``), by ``name``, or the only
    one serving ``task`` when ``name`` is None. A model of another task is the caller's
    mistake (``InvalidRequest``)."""
    if wanted is not None:
        selector = dict(wanted)
        if selector.setdefault("task", task) != task:
            raise InvalidRequest(
                f"this route serves {task}; the request selects task={selector['task']}",
                param="capability",
            )
        return registry.select(selector)
    if name is None:
        return _only_model_for(registry, task)
    try:
        return registry.acquire(name, task)  # loads an unloaded model, if allowed
    except ModelNotDownloaded:
        raise  # its message says how to download it
    except ModelNotFound:
        candidates = [m.name for m in registry if m.definition.task == task]
        hint = f"; {task} models served: {', '.join(candidates)}" if candidates else ""
        raise ModelNotFound(f"the model {name!r} does not exist{hint}", param="model") from None


def _only_model_for(registry: ModelRegistry, task: str) -> ServedModel:
    candidates = [m for m in registry if m.definition.task == task]
    if len(candidates) == 1:
        return candidates[0]
    served = ", ".join(m.name for m in candidates)
    reason = f"several serve {task}: {served}" if served else f"none serves {task}"
    raise InvalidRequest(f"name the model with model=... ({reason})", param="model")
