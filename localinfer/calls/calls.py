""":class:`Calls`: the call layer bound to one registry and its settings.

Each face holds one (the HTTP app in its state, ``Engine`` as an attribute) and goes
through it for everything between parsing its input and rendering its output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

from localinfer.calls.choice import model_for_task
from localinfer.calls.generation import chat_request, completion_request
from localinfer.calls.limits import RequestLimits
from localinfer.calls.options import ChatOptions
from localinfer.calls.stats import model_stats
from localinfer.config import Settings
from localinfer.handlers.tasks import EmbeddingRequest, GenerationRequest
from localinfer.runtime.job import Job
from localinfer.runtime.model import ServedModel
from localinfer.runtime.registry import ModelRegistry


class Calls:
    """Limits, defaults, model choice, submission and stats for one set of served models."""

    def __init__(self, registry: ModelRegistry, settings: Settings):
        self.registry = registry
        self.limits = RequestLimits.from_settings(settings)

    def model(
        self, name: str | None, task: str, wanted: Mapping[str, str] | None = None
    ) -> ServedModel:
        """The served model answering ``task`` (see :func:`.choice.model_for_task`)."""
        return model_for_task(self.registry, name, task, wanted)

    def chat(
        self, messages: Sequence[Mapping[str, str]], **options: Unpack[ChatOptions]
    ) -> GenerationRequest:
        """The handler's request for a chat of text ``messages`` (``system`` already in
        them), within the limits."""
        return chat_request(self.limits, messages, options)

    def completion(self, prompt: str, **options: Unpack[ChatOptions]) -> GenerationRequest:
        """The handler's request for a plain completion of ``prompt``, within the limits."""
        return completion_request(self.limits, prompt, options)

    def embedding(self, texts: Sequence[str], dimensions: int | None = None) -> EmbeddingRequest:
        """The handler's request to embed ``texts``, within the limits."""
        self.limits.check_texts(texts)
        return EmbeddingRequest(texts=tuple(texts), dimensions=dimensions)

    @staticmethod
    def submit(model: ServedModel, payload: object, request_id: str | None = None) -> Job:
        """Queue ``payload`` for ``model`` (full queue, model not ready: raised at once)."""
        return model.submit(payload, request_id=request_id)

    def stats(
        self, extra: Callable[[ServedModel], Mapping[str, Any]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each served model's numbers; ``extra`` adds a face's own per model."""
        return {m.name: model_stats(m, extra(m) if extra else None) for m in self.registry}
