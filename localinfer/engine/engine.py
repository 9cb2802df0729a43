"""The ``Engine`` face: chat (whole, streamed or parsed), embeddings, rerank and user code,
on top of the audio calls and the running base.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any, Literal, TypeVar, Unpack, overload

import numpy as np
from pydantic import BaseModel

from localinfer.calls.options import (
    ChatCallOptions,
    EmbedOptions,
    RerankOptions,
    check_options,
    sampling,
)
from localinfer.client.messages import Messages, as_texts, chat_messages
from localinfer.client.results import (
    ChatResult,
    Embeddings,
    RankedDocument,
    Reranking,
    Usage,
)
from localinfer.client.streams import ChatStream
from localinfer.client.structured import (
    is_model_class,
    parse_reply,
    tools_body,
)
from localinfer.engine.audio import AudioCalls
from localinfer.engine.results import (
    chat_result,
    constraint,
    has_images,
    infer_payload,
    joined,
    text_of,
)
from localinfer.errors import InvalidRequest
from localinfer.handlers.rerank import check_rerank, ranked, rerank_payload, rerank_result
from localinfer.handlers.tasks import (
    CHAT,
    EMBEDDINGS,
    RERANK,
    EmbeddingResult,
    GenerationRequest,
    GenerationResult,
    RerankRequest,
)
from localinfer.runtime.job import Done
from localinfer.runtime.model import ServedModel

M = TypeVar("M")


class Engine(AudioCalls):
    """Models served in this process, called directly: no server, no sockets."""

    # -- chat ----------------------------------------------------------------------------

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        response_format: type[M],
        model: str | None = ...,
        stream: Literal[False] = ...,
        **options: Unpack[ChatCallOptions],
    ) -> Awaitable[M]: ...
    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        stream: Literal[False] = ...,
        response_format: Mapping[str, Any] | None = ...,
        **options: Unpack[ChatCallOptions],
    ) -> Awaitable[ChatResult]: ...
    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        stream: Literal[True],
        response_format: Mapping[str, Any] | type[BaseModel] | None = ...,
        **options: Unpack[ChatCallOptions],
    ) -> ChatStream: ...
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        response_format: object = None,
        **options: Unpack[ChatCallOptions],
    ) -> Awaitable[ChatResult] | Awaitable[Any] | ChatStream:
        """A reply to a prompt or messages; ``stream=True`` for its text as it is generated.
        The request is checked as the server checks it (the same call layer).

        ``response_format=SomePydanticModel`` returns the parsed object (constrained
        decoding guarantees it parses); ``tools`` (pydantic classes or OpenAI dicts) give
        the result typed ``tool_calls``; ``tool_choice`` is ``auto``, ``none``,
        ``required`` or a tool's name.
        """
        check_options(options, ChatCallOptions)
        tools = options.get("tools")
        listed = chat_messages(messages, options.get("system"))
        # messages with images are made ready once the model is known (it must take them)
        images = listed if any(has_images(m["content"]) for m in listed) else None
        request = replace(
            self.calls.chat(
                [{"role": str(m["role"]), "content": text_of(m["content"])} for m in listed],
                **sampling(options),
            ),
            constraint=constraint(response_format),
            tools=tuple(tools_body(tools)) if tools else None,
            tool_choice=options.get("tool_choice") or "auto",
            parallel_tool_calls=options.get("parallel_tool_calls") is not False,
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
        return chat_result(served.name, job, value, started, None)

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
                    yield chat_result(served.name, job, event.value, started, first)
                    return
                if isinstance(event.value, str) and event.value:
                    if first is None:
                        first = (time.perf_counter() - started) * 1e3
                    yield event.value

    # -- embeddings and audio ------------------------------------------------------------

    async def embed(
        self, texts: str | Sequence[str], **options: Unpack[EmbedOptions]
    ) -> Embeddings:
        """One normalised vector per text (``result.similarity()`` compares them)."""
        check_options(options, EmbedOptions, "embed")
        listed = as_texts(texts)
        request = self.calls.embedding(listed, options.get("dimensions"))
        served = self._model(options.get("model"), EMBEDDINGS)
        _, value, _ = await self._run(served, request)
        assert isinstance(value, EmbeddingResult)
        return Embeddings(
            vectors=np.asarray(value.vectors, dtype=np.float32),
            model=served.name,
            usage=Usage(value.prompt_tokens, 0, value.prompt_tokens),
            texts=tuple(listed),
        )

    async def rerank(
        self, query: str, documents: Sequence[str], **options: Unpack[RerankOptions]
    ) -> Reranking:
        """``documents`` best first by relevance to ``query`` (a reranker, or an embeddings
        model's cosine similarity); the same limits and 400s as ``/v1/rerank``."""
        check_options(options, RerankOptions, "rerank")
        listed = list(documents)
        top_n = options.get("top_n")
        check_rerank(
            query,
            listed,
            top_n,
            max_documents=self.settings.max_rerank_documents,
            max_chars=self.settings.max_input_chars,
        )
        served = self._reranker(options.get("model"))
        request = RerankRequest(query, tuple(listed))
        _, value, _ = await self._run(served, rerank_payload(served.definition.task, request))
        result = rerank_result(request, value)
        keep_text = options.get("return_documents", False)
        return Reranking(
            tuple(
                RankedDocument(i, result.scores[i], listed[i] if keep_text else None)
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

    # -- user code -----------------------------------------------------------------------

    async def infer(self, name: str, *args: object, **kwargs: object) -> object:
        """Call ``infer(*args, **kwargs)`` of a served object; a generator's items joined."""
        served = self.registry.get(name)
        _, value, chunks = await self._run(served, infer_payload(served, args, kwargs, False))
        return joined(chunks) if chunks else value

    def infer_stream(self, name: str, *args: object, **kwargs: object) -> AsyncIterator[object]:
        """The items a served generator yields, as they come (a plain value: one item)."""
        return self._stream(name, lambda served: infer_payload(served, args, kwargs, True))

    async def predict(self, name: str, request: object) -> object:
        """Send ``request`` as it is (LitAPI-style objects and handlers take their own input)."""
        served = self.registry.get(name)
        prepare = served.definition.prepare
        _, value, chunks = await self._run(served, prepare(request) if prepare else request)
        return joined(chunks) if chunks else value
