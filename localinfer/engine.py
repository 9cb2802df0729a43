"""``localinfer.Engine``: the same models and handlers as the server, called without HTTP.

The lowest-overhead face: a call submits a job straight to the model's queue and reads
its result stream, exactly what a route does minus parsing, JSON and sockets. Results
and errors are the ones :class:`~localinfer.Client` gives, so code moves between the
two unchanged::

    async with localinfer.Engine(models={"minilm": path}) as engine:
        vectors = await engine.embed(["a", "b"])
        async for delta in engine.chat("Hi", stream=True): ...

``await engine.start()`` / ``await engine.stop()`` keep it open across notebook cells.
Leaving, stopping or an interrupted cell stops the workers and frees the models.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, Literal, TypeVar, overload

import anyio
import numpy as np
from pydantic import BaseModel

from localinfer.client.audio import AudioInput
from localinfer.client.messages import Messages, as_texts, chat_messages, content_text
from localinfer.client.results import (
    ChatResult,
    Embeddings,
    ModelInfo,
    ModelList,
    Stats,
    Timing,
    ToolCallResult,
    Transcription,
    TranscriptSegment,
    Usage,
    statistics_from,
)
from localinfer.client.streams import ChatStream
from localinfer.client.structured import (
    is_model_class,
    parse_reply,
    response_format_body,
    tools_body,
)
from localinfer.config import Settings, load_settings
from localinfer.errors import ConfigurationError, InvalidRequest, RequestTimeout
from localinfer.handlers.generation.constraints import OutputConstraint, canonical_schema
from localinfer.handlers.tasks import (
    CHAT,
    EMBEDDINGS,
    TRANSCRIPTION,
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationResult,
    TranscriptionRequest,
    TranscriptionResult,
)
from localinfer.inprocess import InProcessService, Models, model_definitions
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.runtime.model import ServedModel
from localinfer.runtime.registry import ModelRegistry

M = TypeVar("M")


class Engine(InProcessService):
    """Models served in this process, called directly: no server, no sockets."""

    kind = "engine"

    def __init__(
        self,
        models: Models = (),
        *,
        device: str = "auto",
        workers: int = 1,
        request_timeout_s: float | None = None,
        ready_timeout_s: float = 300.0,
        settings: Settings | None = None,
        **setting_overrides: object,
    ):
        self.settings = settings or load_settings(**setting_overrides)
        self.device, self.workers = device, workers
        self.definitions = model_definitions(
            models, device=device, workers=workers, settings=self.settings
        )
        #: deadline of one call (``None``: none; an interrupted cell cancels anyway)
        self.request_timeout_s = request_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self._registry: ModelRegistry | None = None
        super().__init__()

    def __repr__(self) -> str:
        state = "running" if self._registry is not None else "stopped"
        return f"Engine({', '.join(d.name for d in self.definitions)}, {state})"

    # -- lifecycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Engine]:
        async with ModelRegistry(
            drain_timeout_s=self.settings.drain_timeout_s,
            hang_grace_s=self.settings.hang_grace_s,
            max_abandoned_workers=self.settings.max_abandoned_workers,
        ) as registry:
            for definition in self.definitions:
                registry.add(definition)
            try:
                await registry.wait_ready(self.ready_timeout_s)
            except TimeoutError:
                raise TimeoutError(
                    f"the models did not load within {self.ready_timeout_s:g} s"
                ) from None
            self._registry = registry
            try:
                yield self
            finally:
                self._registry = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise RuntimeError(
                "the engine is not running: use 'async with Engine(...)' or 'await engine.start()'"
            )
        return self._registry

    # -- models --------------------------------------------------------------------------

    def models(self) -> ModelList:
        return ModelList(tuple(ModelInfo(m.name, m.definition.task) for m in self.registry))

    def stats(self) -> Stats:
        """The same numbers ``/v1/stats`` reports."""
        return Stats(
            {
                m.name: statistics_from(
                    {
                        **m.stats.snapshot(),
                        "queue_depth": m.queue.depth,
                        "dropped": m.queue.dropped,
                        "workers": len(m.workers),
                        "busy_workers": sum(w.busy_since is not None for w in m.workers),
                        "restarts": m.restarts,
                    }
                )
                for m in self.registry
            }
        )

    async def load(
        self,
        model: object,
        *,
        name: str | None = None,
        device: str | None = None,
        workers: int | None = None,
    ) -> ModelInfo:
        """Start serving one more model (any ``models=`` form) and wait until it has loaded."""
        (definition,) = model_definitions(
            {name: model} if name else [model],
            device=device or self.device,
            workers=workers or self.workers,
            settings=self.settings,
        )
        served = self.registry.add(definition)
        try:
            with anyio.fail_after(self.ready_timeout_s):
                while not served.ready:
                    if not served.can_serve:
                        errors = sorted({w.error for w in served.workers if w.error})
                        raise ConfigurationError(
                            f"model {served.name!r} failed to load: {'; '.join(errors)}"
                        )
                    await served.wait_changed()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.registry.remove(served.name)
            raise
        return ModelInfo(served.name, definition.task)

    async def unload(self, name: str) -> None:
        """Stop serving ``name``; its handlers are closed in their threads."""
        await self.registry.remove(name)

    def _model(self, name: str | None, task: str) -> ServedModel:
        registry = self.registry
        if name is None:
            candidates = [m for m in registry if m.definition.task == task]
            if len(candidates) == 1:
                return candidates[0]
            served = ", ".join(m.name for m in candidates)
            reason = f"several serve {task}: {served}" if served else f"none serves {task}"
            raise InvalidRequest(f"name the model with model=... ({reason})", param="model")
        model = registry.get(name)
        if model.definition.task != task:
            raise InvalidRequest(
                f"the model {name!r} serves {model.definition.task}, not {task}", param="model"
            )
        return model

    # -- jobs ----------------------------------------------------------------------------

    async def _events(self, job: Job) -> AsyncGenerator[Chunk | Done, None]:
        """The job's events against the deadline; leaving early cancels the job."""
        try:
            if self.request_timeout_s is None:  # no scope per event: the cheapest path
                while not isinstance(event := await job.next_event(), Done):
                    yield event
                yield event
                return
            deadline = anyio.current_time() + self.request_timeout_s
            while True:
                timed: Chunk | Done | None = None
                with anyio.move_on_after(deadline - anyio.current_time()):
                    timed = await job.next_event()
                if timed is None:
                    job.cancel("timeout")
                    raise RequestTimeout(
                        f"the call did not finish within {self.request_timeout_s:g} s "
                        "and was cancelled"
                    )
                yield timed  # outside the scope: a deadline must not cancel the reader's code
                if isinstance(timed, Done):
                    return
        finally:
            job.release()

    async def _run(self, model: ServedModel, payload: object) -> tuple[Job, object, list[object]]:
        """Submit ``payload``; its final value and any chunks streamed before it."""
        job = model.submit(payload)
        chunks: list[object] = []
        async with aclosing(self._events(job)) as events:
            async for event in events:
                if isinstance(event, Done):
                    return job, event.value, chunks
                chunks.append(event.value)
        raise AssertionError("a job's events end with Done")  # pragma: no cover

    # -- chat ----------------------------------------------------------------------------

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        response_format: type[M],
        model: str | None = ...,
        stream: Literal[False] = ...,
        max_tokens: int | None = ...,
        temperature: float = ...,
        top_p: float = ...,
        stop: str | Sequence[str] | None = ...,
        seed: int | None = ...,
        system: str | None = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str = ...,
    ) -> Awaitable[M]: ...
    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        stream: Literal[False] = ...,
        max_tokens: int | None = ...,
        temperature: float = ...,
        top_p: float = ...,
        stop: str | Sequence[str] | None = ...,
        seed: int | None = ...,
        system: str | None = ...,
        response_format: Mapping[str, Any] | None = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str = ...,
    ) -> Awaitable[ChatResult]: ...
    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        stream: Literal[True],
        max_tokens: int | None = ...,
        temperature: float = ...,
        top_p: float = ...,
        stop: str | Sequence[str] | None = ...,
        seed: int | None = ...,
        system: str | None = ...,
        response_format: Mapping[str, Any] | type[BaseModel] | None = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str = ...,
    ) -> ChatStream: ...
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        response_format: object = None,
        tools: Sequence[object] | None = None,
        tool_choice: str = "auto",
    ) -> Awaitable[ChatResult] | Awaitable[Any] | ChatStream:
        """A reply to a prompt or messages; ``stream=True`` for its text as it is generated.

        ``response_format=SomePydanticModel`` returns the parsed object (constrained
        decoding guarantees it parses); ``tools`` (pydantic classes or OpenAI dicts) give
        the result typed ``tool_calls``; ``tool_choice`` is ``auto``, ``none``,
        ``required`` or a tool's name.
        """
        budget = max_tokens or self.settings.default_max_tokens
        if budget > self.settings.max_tokens_limit:
            raise InvalidRequest(
                f"max_tokens is {budget}; the largest accepted is {self.settings.max_tokens_limit}",
                param="max_tokens",
            )
        request = GenerationRequest(
            messages=tuple(
                {"role": str(m["role"]), "content": content_text(m["content"])}
                for m in chat_messages(messages, system)
            ),
            max_new_tokens=budget,
            temperature=temperature,
            top_p=top_p,
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            seed=seed,
            constraint=_constraint(response_format),
            tools=tuple(tools_body(tools)) if tools else None,
            tool_choice=tool_choice,
        )
        if stream:
            return ChatStream(self._chat_stream(model, request))
        if is_model_class(response_format):
            return self._chat_parsed(model, request, response_format)
        return self._chat(model, request)

    async def _chat_parsed(self, name: str | None, request: GenerationRequest, into: object) -> Any:
        return parse_reply(into, (await self._chat(name, request)).text)

    async def _chat(self, name: str | None, request: GenerationRequest) -> ChatResult:
        started = time.perf_counter()
        served = self._model(name, CHAT)
        job, value, _ = await self._run(served, request)
        assert isinstance(value, GenerationResult)
        return _chat_result(served.name, job, value, started, None)

    async def _chat_stream(
        self, name: str | None, request: GenerationRequest
    ) -> AsyncGenerator[str | ChatResult, None]:
        started = time.perf_counter()
        served = self._model(name, CHAT)
        first: float | None = None
        job = served.submit(request)
        async with aclosing(self._events(job)) as events:
            async for event in events:
                if isinstance(event, Done):
                    assert isinstance(event.value, GenerationResult)
                    yield _chat_result(served.name, job, event.value, started, first)
                    return
                if isinstance(event.value, str) and event.value:
                    if first is None:
                        first = (time.perf_counter() - started) * 1e3
                    yield event.value

    # -- embeddings and audio ------------------------------------------------------------

    async def embed(
        self, texts: str | Sequence[str], *, model: str | None = None, dimensions: int | None = None
    ) -> Embeddings:
        """One normalised vector per text (``result.similarity()`` compares them)."""
        listed = as_texts(texts)
        if not listed or not all(listed):
            raise InvalidRequest("texts must be non-empty strings", param="input")
        served = self._model(model, EMBEDDINGS)
        _, value, _ = await self._run(served, EmbeddingRequest(tuple(listed), dimensions))
        assert isinstance(value, EmbeddingResult)
        return Embeddings(
            vectors=np.asarray(value.vectors, dtype=np.float32),
            model=served.name,
            usage=Usage(value.prompt_tokens, 0, value.prompt_tokens),
            texts=tuple(listed),
        )

    async def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        translate: bool = False,
        sample_rate: int = 16_000,
    ) -> Transcription:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz)."""
        from localinfer.handlers.subtitles import language_name

        served = self._model(model, TRANSCRIPTION)
        request = TranscriptionRequest(
            audio=await self._samples(audio, sample_rate),
            task="translate" if translate else "transcribe",
            language=language,
            prompt=prompt,
            temperature=temperature,
        )
        _, value, _ = await self._run(served, request)
        assert isinstance(value, TranscriptionResult)
        return Transcription(
            text=value.text,
            model=served.name,
            language=language_name(value.language),
            duration=value.duration,
            segments=tuple(TranscriptSegment(s.id, s.start, s.end, s.text) for s in value.segments),
        )

    async def _samples(self, audio: object, sample_rate: int) -> np.typing.NDArray[np.float32]:
        from localinfer.handlers.audio import SAMPLE_RATE, decode_audio_async, resample

        limit = self.settings.max_audio_seconds
        if isinstance(audio, str | os.PathLike):
            audio = await anyio.Path(os.fspath(audio)).read_bytes()
        if isinstance(audio, bytes | bytearray):
            return await decode_audio_async(bytes(audio), max_seconds=limit)
        samples = np.asarray(audio)
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        if samples.ndim == 2:  # (n, channels) or (channels, n): mix down
            samples = samples.mean(axis=0 if samples.shape[0] < samples.shape[1] else 1)
        if samples.ndim != 1 or samples.size == 0:
            raise InvalidRequest(f"expected mono or stereo samples, got shape {samples.shape}")
        if samples.size / sample_rate > limit:
            raise InvalidRequest(f"the audio is longer than {limit:g} s")
        return resample(samples.astype(np.float32), sample_rate, SAMPLE_RATE)

    # -- user code -----------------------------------------------------------------------

    async def infer(self, name: str, *args: object, **kwargs: object) -> object:
        """Call ``infer(*args, **kwargs)`` of a served object; a generator's items joined."""
        served = self.registry.get(name)
        _, value, chunks = await self._run(served, _infer_payload(served, args, kwargs, False))
        return _joined(chunks) if chunks else value

    def infer_stream(self, name: str, *args: object, **kwargs: object) -> AsyncIterator[object]:
        """The items a served generator yields, as they come (a plain value: one item)."""
        return self._stream(name, lambda served: _infer_payload(served, args, kwargs, True))

    async def predict(self, name: str, request: object) -> object:
        """Send ``request`` as it is (LitAPI-style objects and handlers take their own input)."""
        served = self.registry.get(name)
        prepare = served.definition.prepare
        _, value, chunks = await self._run(served, prepare(request) if prepare else request)
        return _joined(chunks) if chunks else value

    async def _stream(
        self, name: str, payload: Callable[[ServedModel], object]
    ) -> AsyncGenerator[object, None]:
        served = self.registry.get(name)
        async with aclosing(self._events(served.submit(payload(served)))) as events:
            async for event in events:
                if isinstance(event, Chunk) or event.value is not None:
                    yield event.value


def _infer_payload(
    served: ServedModel, args: tuple[object, ...], kwargs: dict[str, object], stream: bool
) -> object:
    body = {"args": list(args), "kwargs": kwargs, "stream": stream}
    prepare = served.definition.prepare
    return prepare(body) if prepare is not None else body


def _joined(chunks: list[object]) -> object:
    """A whole result from streamed items, as ``/v1/infer`` joins them."""
    texts = [c for c in chunks if isinstance(c, str)]
    if len(texts) == len(chunks):
        return "".join(texts)
    blobs = [bytes(c) for c in chunks if isinstance(c, bytes | bytearray)]
    if len(blobs) == len(chunks):
        return b"".join(blobs)
    return chunks


def _chat_result(
    model: str, job: Job, result: GenerationResult, started: float, first_ms: float | None
) -> ChatResult:
    return ChatResult(
        text=result.text,
        model=model,
        finish_reason=result.finish_reason,
        usage=Usage(
            result.prompt_tokens,
            result.completion_tokens,
            result.prompt_tokens + result.completion_tokens,
        ),
        timing=Timing(
            queue_ms=job.queue_ms or 0.0,
            prefill_ms=result.prefill_ms,
            decode_ms=result.decode_ms,
            tokens_per_second=result.tokens_per_second,
            total_ms=(time.perf_counter() - started) * 1e3,
            first_token_ms=first_ms,
        ),
        id=job.request_id,
        tool_calls=tuple(
            ToolCallResult(call.id, call.name, json.loads(call.arguments))
            for call in result.tool_calls
        ),
    )


def _constraint(response_format: object) -> OutputConstraint | None:
    """``response_format`` (a pydantic class or an OpenAI dict) as the handler's constraint."""
    if response_format is None:
        return None
    body = response_format_body(response_format)
    if body.get("type") == "text":
        return None
    if body.get("type") == "json_object":
        return OutputConstraint(canonical_schema({"type": "object"}))
    if body.get("type") == "json_schema":
        return OutputConstraint(canonical_schema(body["json_schema"]["schema"]))
    raise InvalidRequest(
        f"response_format type {body.get('type')!r} is not one of text, json_object, json_schema",
        param="response_format",
    )
