"""What each task's handler takes and gives: the contract between routes and model code.

Routes build these requests (validated, bounded); handlers return these results. Plain
dataclasses: no torch, no pydantic, nothing HTTP.

- ``chat`` / ``completion``: input :class:`GenerationRequest`; the handler emits ``str``
  text deltas as they are decoded (token by token, not generate-then-split), then
  finishes with a :class:`GenerationResult`. It stops early when ``item.cancelled``.
  With ``request.logprobs`` set (``0..20``) it also emits one :class:`TokenLogprob` per
  generated token (EOS excluded), right after the text delta that token settled (if any):
  the text deltas concatenated are the output, the ``TokenLogprob.token`` strings are its
  tokens. With ``request.tools``, each complete :class:`ToolCall` is emitted (instead of
  its text) as soon as the model closes it. With ``request.constraint`` set the output is
  guaranteed to match it (:mod:`localinfer.handlers.generation.constraints`); an engine
  that cannot enforce it raises ``InvalidRequest`` before emitting anything.
  ``request.tools`` (OpenAI tool definitions) go to the model's chat template; ``n``
  choices are separate requests submitted together, so every engine batches them.
- ``embeddings``: input :class:`EmbeddingRequest`; result :class:`EmbeddingResult`.
- ``transcription``: input :class:`TranscriptionRequest`; result :class:`TranscriptionResult`.
  With ``stream=True`` the handler first emits each :class:`Segment` as it is decoded.
- ``rerank``: input :class:`RerankRequest`; result :class:`RerankResult` (one score per
  document, in the documents' order; the route sorts and cuts to ``top_n``).
- ``speech``: input :class:`SpeechRequest`; the handler emits :class:`SpeechAudio` pieces
  as they are synthesised (a sentence at a time), then finishes with a
  :class:`SpeechResult`. Input :class:`VoiceListRequest`: result, a list of :class:`Voice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from localinfer.handlers.generation.constraints import OutputConstraint

CHAT = "chat"
EMBEDDINGS = "embeddings"
TRANSCRIPTION = "transcription"
SPEECH = "speech"
INFER = "infer"
RERANK = "rerank"

#: the capability (value ``"true"``) of chat handlers that take image parts in messages
IMAGE_INPUT = "images"

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat (``messages``) or plain completion (``prompt``) request.

    A message's ``content`` is text, or (for handlers with the ``IMAGE_INPUT``
    capability) a list of ``{"type": "text", "text": ...}`` and
    ``{"type": "image", "image": <PIL image>}`` parts, in order.
    """

    messages: tuple[dict[str, Any], ...] | None = None
    prompt: str | None = None
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: the output must match this (``response_format``, required / named tool calls)
    constraint: OutputConstraint | None = None
    #: ``None``: no logprobs; ``0..20``: emit a :class:`TokenLogprob` per token with that
    #: many most likely alternatives
    logprobs: int | None = None
    #: OpenAI tool definitions (``{"type": "function", "function": {...}}``) for the template
    tools: tuple[dict[str, Any], ...] | None = None
    #: ``"auto"``, ``"none"``, ``"required"`` or a function's name (enforced by the engine
    #: as a constraint in the model family's call syntax; see ``generation.tool_calls``)
    tool_choice: str = "auto"
    #: more than one call per reply allowed
    parallel_tool_calls: bool = True


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model made; ``arguments`` is JSON text (an object)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One alternative at a position: its text, bytes (UTF-8) and log probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's text, log probability and the ``top`` most likely alternatives.

    ``logprob`` is the log-softmax of the model's logits after any output constraint's mask
    and before temperature / top-p: the model's own belief among the tokens it may emit.
    """

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """How a generation ended; ``text`` is the whole generated text (stop string excluded)."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    prefill_ms: float
    decode_ms: float
    #: the calls the model made (``text`` is then what it said besides them)
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def tokens_per_second(self) -> float:
        if self.decode_ms <= 0 or self.completion_tokens <= 1:
            return 0.0
        # the first token comes out of prefill; the rest out of decode steps
        return (self.completion_tokens - 1) / (self.decode_ms / 1e3)


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    texts: tuple[str, ...]
    #: truncate to this many dimensions (then re-normalise), for models that allow it
    dimensions: int | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    #: one vector per input text, L2-normalised
    vectors: list[list[float]]
    prompt_tokens: int
    #: tokens of each input text (they sum to ``prompt_tokens``)
    text_tokens: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    #: mono float32 PCM at ``sample_rate`` (a numpy array)
    audio: Any
    sample_rate: int = 16_000
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    #: emit each :class:`Segment` as it is decoded, before the result
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class TranscriptionResult:
    text: str
    #: ISO 639-1 code ("en"); verbose_json spells it out ("english") as OpenAI does
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] | None = None


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """Score each document's relevance to ``query`` (a cross-encoder reads each pair)."""

    query: str
    documents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RerankResult:
    #: one relevance score per document, in the request's order (higher: more relevant)
    scores: list[float]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """Text to say. ``voice`` None: the model's default voice."""

    text: str
    voice: str | None = None
    #: 1.0 is the voice's own pace
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """One piece of synthesised speech: mono signed 16-bit little-endian PCM."""

    pcm: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class SpeechResult:
    """How a synthesis ended: what was said, with which voice, and how long it took."""

    voice: str
    sample_rate: int
    audio_seconds: float
    characters: int
    synthesis_ms: float


@dataclass(frozen=True, slots=True)
class VoiceListRequest:
    """Ask a speech handler which voices it can use now (without a download)."""


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    language: str = ""
    gender: str = ""
    description: str = ""
