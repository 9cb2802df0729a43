"""The blocking client's embeddings, rerank, transcription and speech calls (their
options: :mod:`localinfer.calls.options`, shared with ``Client`` and ``Engine``)."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import Literal, Unpack, overload

from localinfer.calls.options import (
    EmbedOptions,
    RerankOptions,
    SpeechOptions,
    TranscribeOptions,
    check_options,
)
from localinfer.client._base import TranscriptReader
from localinfer.client.audio import AudioInput, audio_upload
from localinfer.client.results import Embeddings, Reranking, Speech, Transcription
from localinfer.client.streams import SyncTranscriptStream
from localinfer.client.sync_sender import SyncSender


class SyncMedia(SyncSender):
    """Vectors, rankings, transcripts and speech, blocking."""

    def embed(self, texts: str | Sequence[str], **options: Unpack[EmbedOptions]) -> Embeddings:
        """One normalised vector per text (``result.similarity()`` compares them)."""
        check_options(options, EmbedOptions, "embed")
        return self._run(self._embed_flow(texts, options))

    def rerank(
        self, query: str, documents: Sequence[str], **options: Unpack[RerankOptions]
    ) -> Reranking:
        """``documents`` best first by relevance to ``query`` (a reranker, or an embeddings
        model's cosine similarity)."""
        check_options(options, RerankOptions, "rerank")
        return self._run(self._rerank_flow(query, documents, options))

    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        stream: Literal[False] = ...,
        **options: Unpack[TranscribeOptions],
    ) -> Transcription: ...
    @overload
    def transcribe(
        self, audio: AudioInput, *, stream: Literal[True], **options: Unpack[TranscribeOptions]
    ) -> SyncTranscriptStream: ...
    def transcribe(
        self, audio: AudioInput, *, stream: bool = False, **options: Unpack[TranscribeOptions]
    ) -> Transcription | SyncTranscriptStream:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz);
        ``stream=True`` for the text as segments are decoded."""
        check_options(options, TranscribeOptions, "transcribe")
        name = self._run(self._transcription_model(options))
        upload = audio_upload(audio, self._sample_rate(options))
        if stream:
            return SyncTranscriptStream(self._transcript_stream(name, upload, options))
        return self._run(self._transcribe_flow(name, upload, options))

    def _transcript_stream(
        self, name: str, upload: tuple[str, bytes, str], options: TranscribeOptions
    ) -> Generator[str, None, None]:
        reader = TranscriptReader()
        with self._streamed(self._transcription_send(name, upload, options, stream=True)) as reply:
            for line in reply.iter_lines():
                if delta := reader.feed_line(line):
                    yield delta

    @overload
    def speech(
        self, text: str, *, stream: Literal[False] = ..., **options: Unpack[SpeechOptions]
    ) -> Speech: ...
    @overload
    def speech(
        self, text: str, *, stream: Literal[True], **options: Unpack[SpeechOptions]
    ) -> Iterator[bytes]: ...
    def speech(
        self, text: str, *, stream: bool = False, **options: Unpack[SpeechOptions]
    ) -> Speech | Iterator[bytes]:
        """Text to speech: the audio file, or with ``stream=True`` its bytes as made."""
        check_options(options, SpeechOptions, "speech")
        body = self._speech_body(text, options)
        if stream:
            return self._speech_stream(self._run(body))
        return self._run(self._speech_flow(body, options))

    def _speech_stream(self, payload: dict[str, object]) -> Generator[bytes, None, None]:
        with self._streamed(self._speech_send(payload)) as reply:
            yield from reply.iter_bytes()
