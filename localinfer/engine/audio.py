"""The engine's audio calls: ``transcribe`` (whole or streamed by segment) and ``speech``
(a file or its bytes as they are made), from paths, bytes or samples.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing

import anyio
import numpy as np

from localinfer.calls.options import (
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SPEECH_FORMAT,
    SpeechOptions,
    TranscribeOptions,
)
from localinfer.client.async_audio import AsyncAudio
from localinfer.client.audio import AudioInput
from localinfer.client.results import (
    Speech,
    Transcription,
    TranscriptSegment,
)
from localinfer.engine.base import EngineBase
from localinfer.errors import InvalidRequest
from localinfer.handlers.tasks import (
    SPEECH,
    TRANSCRIPTION,
    Segment,
    SpeechAudio,
    SpeechRequest,
    TranscriptionRequest,
    TranscriptionResult,
)
from localinfer.runtime.job import Chunk, Done


class AudioCalls(EngineBase, AsyncAudio):
    """Speech to text and text to speech, in process."""

    async def _request(
        self, audio: AudioInput, options: TranscribeOptions, stream: bool
    ) -> TranscriptionRequest:
        temperature = options.get("temperature")
        return TranscriptionRequest(
            audio=await self._samples(audio, options.get("sample_rate", DEFAULT_SAMPLE_RATE)),
            task="translate" if options.get("translate") else "transcribe",
            language=options.get("language"),
            prompt=options.get("prompt"),
            temperature=0.0 if temperature is None else temperature,
            stream=stream,
        )

    async def _transcribe(self, audio: AudioInput, options: TranscribeOptions) -> Transcription:
        from localinfer.handlers.subtitles import language_name

        served = self._model(options.get("model"), TRANSCRIPTION)
        _, value, _ = await self._run(served, await self._request(audio, options, False))
        assert isinstance(value, TranscriptionResult)
        return Transcription(
            text=value.text,
            model=served.name,
            language=language_name(value.language),
            duration=value.duration,
            segments=tuple(TranscriptSegment(s.id, s.start, s.end, s.text) for s in value.segments),
        )

    async def _transcript_stream(
        self, audio: AudioInput, options: TranscribeOptions
    ) -> AsyncGenerator[str, None]:
        served = self._model(options.get("model"), TRANSCRIPTION)
        job = served.submit(await self._request(audio, options, True))
        async with aclosing(self._events(job)) as events:
            async for event in events:
                if (
                    isinstance(event, Chunk)
                    and isinstance(event.value, Segment)
                    and event.value.text
                ):
                    yield event.value.text

    def _speech(
        self, text: str, stream: bool, options: SpeechOptions
    ) -> Awaitable[Speech] | AsyncIterator[bytes]:
        from localinfer.handlers.speech_formats import check_format

        response_format = options.get("response_format", DEFAULT_SPEECH_FORMAT)
        check_format(response_format)
        speed = options.get("speed")
        request = SpeechRequest(
            text=text, voice=options.get("voice"), speed=1.0 if speed is None else speed
        )
        chunks = self._speech_chunks(options.get("model"), request, response_format)
        if stream:
            return chunks
        return self._speech_file(chunks, response_format)

    async def _speech_file(
        self, chunks: AsyncGenerator[bytes, None], response_format: str
    ) -> Speech:
        async with aclosing(chunks):
            return Speech(b"".join([chunk async for chunk in chunks]), response_format)

    async def _speech_chunks(
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
