"""The OpenAI protocol: one pydantic model per request and response, validation in the model.

Unknown fields sent by OpenAI clients are ignored; known fields localinfer cannot honour
(``n > 1``, ``tools``, ``logprobs``) are refused with a message that says so.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from localinfer.calls.options import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from localinfer.calls.outcome import GenerationTiming, TokenUsage
from localinfer.errors import InvalidRequest

# -- shared ----------------------------------------------------------------------------------


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=10_000_000)


def parse(model: type[Request], body: Any, *, strict: bool = True) -> Any:
    """Validate ``body`` into ``model``; the first problem becomes a 400 naming the field.

    JSON bodies are validated strictly, as the schemas in ``/openapi.json`` say: ``0`` is
    not ``false``, ``"1"`` and ``1.5`` are not integers. Form fields (all text) are not.
    """
    try:
        return model.model_validate(body, strict=strict)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = first.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        count = exc.error_count()
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        raise InvalidRequest(
            f"{where + ': ' if where else ''}{message}{more}", param=where or None
        ) from None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int

    @classmethod
    def of(cls, usage: TokenUsage) -> Usage:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


class Performance(BaseModel):
    """Timing beyond OpenAI's fields, in every chat/completion response."""

    queue_ms: float
    prefill_ms: float
    decode_ms: float
    tokens_per_second: float

    @classmethod
    def of(cls, timing: GenerationTiming) -> Performance:
        """The wire form: milliseconds to the microsecond."""
        return cls(
            queue_ms=round(timing.queue_ms, 3),
            prefill_ms=round(timing.prefill_ms, 3),
            decode_ms=round(timing.decode_ms, 3),
            tokens_per_second=round(timing.tokens_per_second, 3),
        )


# -- generation ------------------------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        if any(isinstance(part, ImagePart) for part in self.content):
            raise InvalidRequest("this model does not accept image parts", param="messages")
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationParams(Request):
    """Fields chat and plain completions share."""

    model: str = Field(min_length=1, max_length=512)
    temperature: float = Field(DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    top_p: float = Field(DEFAULT_TOP_P, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)  # what a generator takes: int64
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError(f"n must be 1 (got {n}): localinfer generates one choice per request")
        return n

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stop

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(GenerationParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Any] | None = None
    logprobs: bool | None = None

    @model_validator(mode="after")
    def _unsupported(self) -> ChatCompletionRequest:
        if self.tools:
            raise ValueError("tools are not supported by localinfer's chat models")
        if self.logprobs:
            raise ValueError("logprobs are not supported")
        return self

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(GenerationParams):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("send one prompt per request")
        return prompt

    @model_validator(mode="after")
    def _unsupported(self) -> CompletionRequest:
        if self.echo or self.logprobs or self.suffix:
            raise ValueError("echo, logprobs and suffix are not supported")
        return self

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def token_budget(self) -> int | None:
        return self.max_tokens


FinishReason = Literal["stop", "length"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    performance: Performance


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    performance: Performance | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None


class Completion(BaseModel):
    """Both the whole reply and each streamed chunk (OpenAI uses one object for both)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    performance: Performance | None = None


# -- embeddings ------------------------------------------------------------------------------


NonEmptyText = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(Request):
    model: str = Field(min_length=1, max_length=512)
    input: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError(
                "input must be a string or a list of strings (token arrays are not supported)"
            )
        if value == [] or value == "":
            raise ValueError("input must not be empty")
        if isinstance(value, list) and "" in value:
            raise ValueError(f"input[{value.index('')}] is an empty string")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


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


class Transcription(BaseModel):
    text: str


# -- models ----------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "localinfer"
    task: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error the OpenAI-style routes answer (``localinfer.server.errors``)."""

    error: ErrorDetail
