"""``transcribe`` and ``speech`` as the async faces offer them, declared once: ``Client``
sends them over HTTP, ``Engine`` hands them to its models in process; each says how in
the hooks below. (Their options: :mod:`localinfer.calls.options`.)"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Literal, Unpack, overload

from localinfer.calls.options import SpeechOptions, TranscribeOptions, check_options
from localinfer.client.audio import AudioInput
from localinfer.client.results import Speech, Transcription
from localinfer.client.streams import TranscriptStream


class AsyncAudio:
    """Speech to text and text to speech, with ``await``."""

    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        stream: Literal[False] = ...,
        **options: Unpack[TranscribeOptions],
    ) -> Awaitable[Transcription]: ...
    @overload
    def transcribe(
        self, audio: AudioInput, *, stream: Literal[True], **options: Unpack[TranscribeOptions]
    ) -> TranscriptStream: ...
    def transcribe(
        self, audio: AudioInput, *, stream: bool = False, **options: Unpack[TranscribeOptions]
    ) -> Awaitable[Transcription] | TranscriptStream:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz);
        ``stream=True`` for the text as segments are decoded."""
        check_options(options, TranscribeOptions, "transcribe")
        if stream:
            return TranscriptStream(self._transcript_stream(audio, options))
        return self._transcribe(audio, options)

    @overload
    def speech(
        self, text: str, *, stream: Literal[False] = ..., **options: Unpack[SpeechOptions]
    ) -> Awaitable[Speech]: ...
    @overload
    def speech(
        self, text: str, *, stream: Literal[True], **options: Unpack[SpeechOptions]
    ) -> AsyncIterator[bytes]: ...
    def speech(
        self, text: str, *, stream: bool = False, **options: Unpack[SpeechOptions]
    ) -> Awaitable[Speech] | AsyncIterator[bytes]:
        """Text to speech: the audio file (which plays in a notebook), or with
        ``stream=True`` its bytes as they are made (a sentence at a time)."""
        check_options(options, SpeechOptions, "speech")
        return self._speech(text, stream, options)

    # -- what each face implements ---------------------------------------------------------

    async def _transcribe(self, audio: AudioInput, options: TranscribeOptions) -> Transcription:
        raise NotImplementedError

    def _transcript_stream(
        self, audio: AudioInput, options: TranscribeOptions
    ) -> AsyncGenerator[str, None]:
        raise NotImplementedError

    def _speech(
        self, text: str, stream: bool, options: SpeechOptions
    ) -> Awaitable[Speech] | AsyncIterator[bytes]:
        """The audio file, or (``stream``) its bytes as made; refuse bad options at once."""
        raise NotImplementedError
