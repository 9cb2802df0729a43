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
from dataclasses import replace
from typing import Any, Literal, TypeVar, Unpack, overload

import anyio
import numpy as np
from pydantic import BaseModel

from localinfer.calls.calls import Calls
from localinfer.calls.deadline import events_within
from localinfer.calls.options import ChatOptions
from localinfer.calls.outcome import GenerationTiming, TokenUsage
from localinfer.client.audio import AudioInput
from localinfer.client.messages import Messages, as_texts, chat_messages, content_text
from localinfer.client.results import (
    ChatResult,
    Embeddings,
    ModelInfo,
    ModelList,
    RankedDocument,
    Reranking,
    Speech,
    Stats,
    Timing,
    ToolCallResult,
    Transcription,
    TranscriptSegment,
    Usage,
    statistics_from,
)
from localinfer.client.streams import ChatStream, TranscriptStream
from localinfer.client.structured import (
    is_model_class,
    parse_reply,
    response_format_body,
    tools_body,
)
from localinfer.config import Settings, load_settings
from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.generation.constraints import OutputConstraint, canonical_schema
from localinfer.handlers.rerank import check_rerank, ranked, rerank_payload, rerank_result
from localinfer.handlers.tasks import (
    CHAT,
    EMBEDDINGS,
    RERANK,
    SPEECH,
    TRANSCRIPTION,
    EmbeddingResult,
    GenerationRequest,
    GenerationResult,
    RerankRequest,
    Segment,
    SpeechAudio,
    SpeechRequest,
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
        self._calls: Calls | None = None
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
            load_timeout_s=self.settings.load_timeout_s,
        ) as registry:
            for definition in self.definitions:
                registry.add(definition)
            try:
                await registry.wait_ready(self.ready_timeout_s)
            except TimeoutError:
                raise TimeoutError(
                    f"the models did not load within {self.ready_timeout_s:g} s"
                ) from None
            self._registry, self._calls = registry, Calls(registry, self.settings)
            try:
                yield self
            finally:
                self._registry = self._calls = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise RuntimeError(
                "the engine is not running: use 'async with Engine(...)' or 'await engine.start()'"
            )
        return self._registry

    @property
    def calls(self) -> Calls:
        """The call layer the HTTP routes use too: limits, defaults, model choice."""
        if self._calls is None:
            self.registry  # noqa: B018 -- raises, saying how to start the engine
        assert self._calls is not None
        return self._calls

    # -- models --------------------------------------------------------------------------

    def models(self) -> ModelList:
        return ModelList(tuple(ModelInfo(m.name, m.definition.task) for m in self.registry))

    def stats(self) -> Stats:
        """The same numbers ``/v1/stats`` reports."""
        return Stats({name: statistics_from(raw) for name, raw in self.calls.stats().items()})

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
        return self.calls.model(name, task)

    # -- jobs ----------------------------------------------------------------------------

    def _events(self, job: Job) -> AsyncGenerator[Chunk | Done, None]:
        """The job's events against the deadline; leaving early cancels the job."""
        return events_within(job, self.request_timeout_s)

    async def _run(self, model: ServedModel, payload: object) -> tuple[Job, object, list[object]]:
        """Submit ``payload``; its final value and any chunks streamed before it."""
        job = Calls.submit(model, payload)
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
        tools: Sequence[object] | None = ...,
        tool_choice: str = ...,
        **options: Unpack[ChatOptions],
    ) -> Awaitable[M]: ...
    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        stream: Literal[False] = ...,
        response_format: Mapping[str, Any] | None = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str = ...,
        **options: Unpack[ChatOptions],
    ) -> Awaitable[ChatResult]: ...
    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        stream: Literal[True],
        response_format: Mapping[str, Any] | type[BaseModel] | None = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str = ...,
        **options: Unpack[ChatOptions],
    ) -> ChatStream: ...
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        response_format: object = None,
        tools: Sequence[object] | None = None,
        tool_choice: str = "auto",
        **options: Unpack[ChatOptions],
    ) -> Awaitable[ChatResult] | Awaitable[Any] | ChatStream:
        """A reply to a prompt or messages; ``stream=True`` for its text as it is generated.
        The request is checked as the server checks it (the same call layer).

        ``response_format=SomePydanticModel`` returns the parsed object (constrained
        decoding guarantees it parses); ``tools`` (pydantic classes or OpenAI dicts) give
        the result typed ``tool_calls``; ``tool_choice`` is ``auto``, ``none``,
        ``required`` or a tool's name.
        """
        listed = chat_messages(messages, options.get("system"))
        # messages with images are made ready once the model is known (it must take them)
        images = listed if any(_has_images(m["content"]) for m in listed) else None
        request = replace(
            self.calls.chat(
                [{"role": str(m["role"]), "content": _text_of(m["content"])} for m in listed],
                **options,
            ),
            constraint=_constraint(response_format),
            tools=tuple(tools_body(tools)) if tools else None,
            tool_choice=tool_choice,
        )
        if stream:
            return ChatStream(self._chat_stream(model, request, images))
        if is_model_class(response_format):
            return self._chat_parsed(model, request, response_format, images)
        return self._chat(model, request, images)

    async def _chat_parsed(
        self,
        name: str | None,
        request: GenerationRequest,
        into: object,
        images: list[dict[str, object]] | None,
    ) -> Any:
        return parse_reply(into, (await self._chat(name, request, images)).text)

    async def _with_images(
        self,
        served: ServedModel,
        request: GenerationRequest,
        images: list[dict[str, object]] | None,
    ) -> GenerationRequest:
        """``request`` with its messages' images decoded, as the chat route does it."""
        if images is None:
            return request
        from pydantic import ValidationError

        from localinfer.server.chat_images import vision_messages
        from localinfer.server.protocol import ChatMessage

        try:
            parsed = [ChatMessage.model_validate(m) for m in images]
        except ValidationError as exc:
            raise InvalidRequest(f"messages: {exc.errors()[0]['msg']}", param="messages") from None
        converted = await vision_messages(served, parsed, self.settings, self.settings.max_images)
        return replace(request, messages=converted)

    async def _chat(
        self,
        name: str | None,
        request: GenerationRequest,
        images: list[dict[str, object]] | None = None,
    ) -> ChatResult:
        started = time.perf_counter()
        served = self._model(name, CHAT)
        request = await self._with_images(served, request, images)
        job, value, _ = await self._run(served, request)
        assert isinstance(value, GenerationResult)
        return _chat_result(served.name, job, value, started, None)

    async def _chat_stream(
        self,
        name: str | None,
        request: GenerationRequest,
        images: list[dict[str, object]] | None = None,
    ) -> AsyncGenerator[str | ChatResult, None]:
        started = time.perf_counter()
        served = self._model(name, CHAT)
        request = await self._with_images(served, request, images)
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
        request = self.calls.embedding(listed, dimensions)
        served = self._model(model, EMBEDDINGS)
        _, value, _ = await self._run(served, request)
        assert isinstance(value, EmbeddingResult)
        return Embeddings(
            vectors=np.asarray(value.vectors, dtype=np.float32),
            model=served.name,
            usage=Usage(value.prompt_tokens, 0, value.prompt_tokens),
            texts=tuple(listed),
        )

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        model: str | None = None,
        top_n: int | None = None,
        return_documents: bool = False,
    ) -> Reranking:
        """``documents`` best first by relevance to ``query`` (a reranker, or an embeddings
        model's cosine similarity); the same limits and 400s as ``/v1/rerank``."""
        listed = list(documents)
        check_rerank(
            query,
            listed,
            top_n,
            max_documents=self.settings.max_rerank_documents,
            max_chars=self.settings.max_input_chars,
        )
        served = self._reranker(model)
        request = RerankRequest(query, tuple(listed))
        _, value, _ = await self._run(served, rerank_payload(served.definition.task, request))
        result = rerank_result(request, value)
        return Reranking(
            tuple(
                RankedDocument(i, result.scores[i], listed[i] if return_documents else None)
                for i in ranked(result.scores, top_n)
            ),
            model=served.name,
            usage=Usage(result.prompt_tokens, 0, result.prompt_tokens),
        )

    def _reranker(self, name: str | None) -> ServedModel:
        """``name`` if it reranks; unnamed, the only reranker, else the only embeddings model."""
        if name is not None:
            served = self.registry.get(name)
            if served.definition.task not in (RERANK, EMBEDDINGS):
                raise InvalidRequest(
                    f"the model {name!r} serves {served.definition.task}; rerank needs a "
                    "rerank or embeddings model",
                    param="model",
                )
            return served
        if any(m.definition.task == RERANK for m in self.registry):
            return self._model(None, RERANK)
        return self._model(None, EMBEDDINGS)

    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = ...,
        language: str | None = ...,
        prompt: str | None = ...,
        temperature: float = ...,
        translate: bool = ...,
        sample_rate: int = ...,
        stream: Literal[False] = ...,
    ) -> Awaitable[Transcription]: ...
    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = ...,
        language: str | None = ...,
        prompt: str | None = ...,
        temperature: float = ...,
        translate: bool = ...,
        sample_rate: int = ...,
        stream: Literal[True],
    ) -> TranscriptStream: ...
    def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        translate: bool = False,
        sample_rate: int = 16_000,
        stream: bool = False,
    ) -> Awaitable[Transcription] | TranscriptStream:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz);
        ``stream=True`` for the text as segments are decoded."""

        async def request() -> TranscriptionRequest:
            return TranscriptionRequest(
                audio=await self._samples(audio, sample_rate),
                task="translate" if translate else "transcribe",
                language=language,
                prompt=prompt,
                temperature=temperature,
                stream=stream,
            )

        if stream:
            return TranscriptStream(self._transcript_stream(model, request))
        return self._transcribe(model, request)

    async def _transcribe(
        self, name: str | None, request: Callable[[], Awaitable[TranscriptionRequest]]
    ) -> Transcription:
        from localinfer.handlers.subtitles import language_name

        served = self._model(name, TRANSCRIPTION)
        _, value, _ = await self._run(served, await request())
        assert isinstance(value, TranscriptionResult)
        return Transcription(
            text=value.text,
            model=served.name,
            language=language_name(value.language),
            duration=value.duration,
            segments=tuple(TranscriptSegment(s.id, s.start, s.end, s.text) for s in value.segments),
        )

    async def _transcript_stream(
        self, name: str | None, request: Callable[[], Awaitable[TranscriptionRequest]]
    ) -> AsyncGenerator[str, None]:
        served = self._model(name, TRANSCRIPTION)
        async with aclosing(self._events(served.submit(await request()))) as events:
            async for event in events:
                if (
                    isinstance(event, Chunk)
                    and isinstance(event.value, Segment)
                    and event.value.text
                ):
                    yield event.value.text

    @overload
    def speech(
        self,
        text: str,
        *,
        model: str | None = ...,
        voice: str | None = ...,
        response_format: str = ...,
        speed: float = ...,
        stream: Literal[False] = ...,
    ) -> Awaitable[Speech]: ...
    @overload
    def speech(
        self,
        text: str,
        *,
        model: str | None = ...,
        voice: str | None = ...,
        response_format: str = ...,
        speed: float = ...,
        stream: Literal[True],
    ) -> AsyncIterator[bytes]: ...
    def speech(
        self,
        text: str,
        *,
        model: str | None = None,
        voice: str | None = None,
        response_format: str = "wav",
        speed: float = 1.0,
        stream: bool = False,
    ) -> Awaitable[Speech] | AsyncIterator[bytes]:
        """Text to speech: the audio file (which plays in a notebook), or with
        ``stream=True`` its bytes as they are made (a sentence at a time)."""
        from localinfer.handlers.speech_formats import check_format

        check_format(response_format)
        request = SpeechRequest(text=text, voice=voice, speed=speed)
        chunks = self._speech_stream(model, request, response_format)
        if stream:
            return chunks
        return self._speech(chunks, response_format)

    async def _speech(self, chunks: AsyncGenerator[bytes, None], response_format: str) -> Speech:
        async with aclosing(chunks):
            return Speech(b"".join([chunk async for chunk in chunks]), response_format)

    async def _speech_stream(
        self, name: str | None, request: SpeechRequest, response_format: str
    ) -> AsyncGenerator[bytes, None]:
        from localinfer.handlers.speech_formats import encode

        served = self._model(name, SPEECH)
        async with aclosing(self._events(served.submit(request))) as events:
            first = await events.__anext__()
            if isinstance(first, Done):  # nothing to say (punctuation only)
                piece = SpeechAudio(b"", int(getattr(first.value, "sample_rate", 24_000)))
            else:
                piece = first.value

            async def rest() -> AsyncGenerator[SpeechAudio, None]:
                if isinstance(first, Done):
                    return
                async for event in events:
                    if isinstance(event, Chunk):
                        yield event.value

            async with aclosing(encode(piece, rest(), response_format)) as encoded:
                async for data in encoded:
                    yield data

    async def _samples(self, audio: object, sample_rate: int) -> np.typing.NDArray[np.float32]:
        from localinfer.audio import SAMPLE_RATE, decode_audio_async, resample

        limits = self.calls.limits
        limit = limits.max_audio_seconds
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
        limits.check_audio(samples.size, sample_rate)
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


def _text_of(content: object) -> str:
    """A message's text, its image parts left out (they are decoded once the model is known)."""
    if isinstance(content, list):
        content = [p for p in content if not (isinstance(p, dict) and p.get("type") == "image_url")]
    return content_text(content)


def _has_images(content: object) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "image_url" for part in content
    )


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
    usage, timing = TokenUsage.of(result), GenerationTiming.of(job, result)
    return ChatResult(
        text=result.text,
        model=model,
        finish_reason=result.finish_reason,
        usage=Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        timing=Timing(
            queue_ms=timing.queue_ms,
            prefill_ms=timing.prefill_ms,
            decode_ms=timing.decode_ms,
            tokens_per_second=timing.tokens_per_second,
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
