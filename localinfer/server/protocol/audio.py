"""Audio both ways: transcription/translation forms and events, speech requests, events and
voices.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    RootModel,
    field_validator,
    model_validator,
)

from localinfer.server.protocol.base import Request

# -- audio -----------------------------------------------------------------------------------

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]


def _segments_only() -> list[Granularity]:
    return ["segment"]


class TranscriptionForm(Request):
    """The non-file fields of a transcription/translation multipart form."""

    model: str = Field(min_length=1, max_length=512)
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=10_000)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(default_factory=_segments_only)
    #: server-sent ``transcript.text.delta`` events as segments are decoded, then ``done``
    stream: bool = False

    @model_validator(mode="after")
    def _stream_formats(self) -> TranscriptionForm:
        if self.stream and self.response_format not in ("json", "text"):
            raise ValueError(
                f"stream: a streamed transcript is text; response_format "
                f"{self.response_format!r} cannot stream (use json or text)"
            )
        return self


class Transcription(BaseModel):
    text: str


class TranscriptTextDelta(BaseModel):
    """A streamed transcription's piece of text (OpenAI's event)."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(BaseModel):
    """The last event of a streamed transcription: the whole text."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


class TranscriptStreamEvent(RootModel[TranscriptTextDelta | TranscriptTextDone]):
    """Each event of a streamed transcription."""


# -- speech ----------------------------------------------------------------------------------

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceID(BaseModel):
    id: str = Field(min_length=1, max_length=128)


class SpeechRequest(Request):
    """``POST /v1/audio/speech``: text in, audio out (streamed as it is made)."""

    model: str = Field(min_length=1, max_length=512)
    input: str = Field(max_length=4096)
    #: a voice name, or OpenAI's ``{"id": ...}``; left out: the model's default voice
    voice: str | VoiceID | None = None
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    #: steering a voice by instructions is not something these models can do
    instructions: str | None = Field(None, max_length=4096)

    @field_validator("input")
    @classmethod
    def _some_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input is empty: there is nothing to say")
        return value

    @field_validator("instructions")
    @classmethod
    def _no_instructions(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("instructions are not supported by localinfer's voices")
        return value

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceID) else self.voice


class SpeechAudioDelta(BaseModel):
    """``stream_format: sse``: a piece of the encoded audio, base64."""

    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str


class SpeechUsage(BaseModel):
    input_characters: int
    audio_seconds: float


class SpeechAudioDone(BaseModel):
    """``stream_format: sse``: the last event."""

    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage


class SpeechStreamEvent(RootModel[SpeechAudioDelta | SpeechAudioDone]):
    """Each event of ``stream_format: sse``."""


class VoiceCard(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    model: str
    language: str = ""
    gender: str = ""
    description: str = ""


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceCard]
