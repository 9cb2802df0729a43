"""The OpenAI protocol: one pydantic model per request and response, validation in the model.

Unknown fields sent by OpenAI clients are ignored; known fields localinfer cannot honour
(``echo`` and ``suffix`` on completions) are refused with a message that says so. Every
chat field is honoured: ``response_format`` and required / named ``tool_choice`` by
constrained decoding, ``logprobs``, ``n`` (up to :data:`MAX_CHOICES`).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

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


class FunctionCall(BaseModel):
    name: str
    #: JSON text, as OpenAI sends it
    arguments: str


class ToolCallParam(BaseModel):
    """A call in an assistant message of the history (or of a reply)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(
                f"a {self.role} message needs content (null is only allowed for an "
                "assistant message with tool_calls)"
            )
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def as_template_message(self, text: str) -> dict[str, Any]:
        """The message for the model's chat template (tool calls and ids kept)."""
        message: dict[str, Any] = {"role": self.role, "content": text}
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role == "tool":
            message["name"] = self.name
        return message

    @property
    def images(self) -> list[ImagePart]:
        if isinstance(self.content, list):
            return [part for part in self.content if isinstance(part, ImagePart)]
        return []

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        if any(isinstance(part, ImagePart) for part in self.content):
            raise InvalidRequest("this model does not accept image parts", param="messages")
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def text_beside_images(self) -> str:
        """The text parts alone (a vision model gets the images as well)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""


#: the most choices (``n``) one request may ask for
MAX_CHOICES = 8
#: the most alternatives per token (``top_logprobs``), as OpenAI
MAX_TOP_LOGPROBS = 20


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationParams(Request):
    """Fields chat and plain completions share."""

    model: str = Field(min_length=1, max_length=512)
    temperature: float = Field(DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    top_p: float = Field(DEFAULT_TOP_P, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)  # what a generator takes: int64
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = None

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


class TextFormat(BaseModel):
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    type: Literal["json_object"]


class JsonSchemaSpec(BaseModel):
    name: str = Field("response", max_length=64)
    description: str | None = None
    #: the JSON schema (``schema`` in the wire format)
    schema_: dict[str, Any] = Field(alias="schema", default_factory=dict)
    #: localinfer enforces every schema; ``strict`` is accepted either way
    strict: bool | None = None

    model_config = ConfigDict(populate_by_name=True)


class JsonSchemaFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormatParam = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(GenerationParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormatParam | None = None
    tools: list[ToolDefinition] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.tool_choice not in (None, "none", "auto") and not self.tools:
            raise ValueError("tool_choice needs tools")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names {self.tool_choice.function.name!r}, "
                    "which is not among the tools"
                )
        forced = self.tool_choice not in (None, "none", "auto")
        if forced and self.response_format is not None and self.response_format.type != "text":
            raise ValueError(
                "a required or named tool_choice cannot be combined with a JSON response_format"
            )
        return self

    @property
    def tool_choice_name(self) -> str:
        """``auto`` / ``none`` / ``required``, or the named function."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice or "auto"

    @property
    def logprobs_top(self) -> int | None:
        """What the handler gets: None (off) or the number of alternatives."""
        return (self.top_logprobs or 0) if self.logprobs else None

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(GenerationParams):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("send one prompt per request")
        return prompt

    @model_validator(mode="after")
    def _unsupported(self) -> CompletionRequest:
        if self.echo or self.suffix:
            raise ValueError("echo and suffix are not supported")
        return self

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def token_budget(self) -> int | None:
        return self.max_tokens


FinishReason = Literal["stop", "length", "tool_calls"]


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallParam] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    performance: Performance


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    performance: Performance | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


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


# -- rerank ----------------------------------------------------------------------------------


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


class RerankRequest(Request):
    """Cohere/Jina ``/rerank``. Unknown fields are refused: none of theirs goes unheeded."""

    model_config = ConfigDict(extra="forbid", str_max_length=10_000_000)

    model: str = Field(min_length=1, max_length=512)
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False

    @field_validator("documents", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # pydantic says what it should be
        if not value:
            raise ValueError("documents must not be empty")
        for index, document in enumerate(value):
            text = document.get("text") if isinstance(document, dict) else document
            if not isinstance(text, str):
                raise ValueError(
                    f"documents[{index}] must be a string or an object with a string 'text'"
                )
        return value

    @model_validator(mode="after")
    def _top_n_in_range(self) -> RerankRequest:
        if self.top_n is not None and self.top_n > len(self.documents):
            raise ValueError(
                f"top_n must be between 1 and the number of documents ({len(self.documents)}), "
                f"not {self.top_n}"
            )
        return self

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankItem(BaseModel):
    index: int
    relevance_score: float
    #: with ``return_documents: true`` only
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    """Results best first, at most ``top_n`` of them."""

    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    results: list[RerankItem]
    usage: RerankUsage


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


# -- models ----------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "localinfer"
    task: str
    #: what serves it, as its handler reports once loaded (e.g. continuous batching or not)
    engine: str | None = None


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
