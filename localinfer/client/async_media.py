"""The async client's embeddings, rerank, transcription and speech calls (their options:
:mod:`localinfer.calls.options`, shared with ``SyncClient`` and ``Engine``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from typing import Unpack

from anyio import to_thread

from localinfer.calls.options import (
    EmbedOptions,
    RerankOptions,
    SpeechOptions,
    TranscribeOptions,
    check_options,
)
from localinfer.client._base import Flow, TranscriptReader
from localinfer.client.async_audio import AsyncAudio
from localinfer.client.async_sender import AsyncSender
from localinfer.client.audio import AudioInput, audio_upload
from localinfer.client.results import Embeddings, Reranking, Speech, Transcription


class AsyncMedia(AsyncSender, AsyncAudio):
    """Vectors, rankings, transcripts and speech, with ``await``."""

    async def embed(
        self, texts: str | Sequence[str], **options: Unpack[EmbedOptions]
    ) -> Embeddings:
        """One normalised vector per text (``result.similarity()`` compares them)."""
        check_options(options, EmbedOptions, "embed")
        return await self._run(self._embed_flow(texts, options))

    async def rerank(
        self, query: str, documents: Sequence[str], **options: Unpack[RerankOptions]
    ) -> Reranking:
        """``documents`` best first by relevance to ``query`` (a reranker, or an embeddings
        model's cosine similarity)."""
        check_options(options, RerankOptions, "rerank")
        return await self._run(self._rerank_flow(query, documents, options))

    async def _upload(
        self, audio: AudioInput, options: TranscribeOptions
    ) -> tuple[str, tuple[str, bytes, str]]:
        """The model's name, and the audio as a file (encoded off the event loop)."""
        name = await self._run(self._transcription_model(options))
        return name, await to_thread.run_sync(audio_upload, audio, self._sample_rate(options))

    async def _transcribe(self, audio: AudioInput, options: TranscribeOptions) -> Transcription:
        name, upload = await self._upload(audio, options)
        return await self._run(self._transcribe_flow(name, upload, options))

    async def _transcript_stream(
        self, audio: AudioInput, options: TranscribeOptions
    ) -> AsyncGenerator[str, None]:
        name, upload = await self._upload(audio, options)
        reader = TranscriptReader()
        async with self._streamed(
            self._transcription_send(name, upload, options, stream=True)
        ) as reply:
            async for line in reply.aiter_lines():
                if delta := reader.feed_line(line):
                    yield delta

    def _speech(
        self, text: str, stream: bool, options: SpeechOptions
    ) -> Awaitable[Speech] | AsyncIterator[bytes]:
        body = self._speech_body(text, options)
        if stream:
            return self._speech_stream(body)
        return self._run(self._speech_flow(body, options))

    async def _speech_stream(self, body: Flow[dict[str, object]]) -> AsyncGenerator[bytes, None]:
        payload = await self._run(body)
        async with self._streamed(self._speech_send(payload)) as reply:
            async for chunk in reply.aiter_bytes():
                yield chunk
