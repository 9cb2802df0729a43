"""The options of every call, declared once for ``Client``, ``SyncClient`` and ``Engine``.

Each face takes them as ``**options: Unpack[...]``, so a signature is written once here
and checked by mypy everywhere; :func:`check_options` refuses, at run time, a keyword
that is none of them. A module with no imports of the runtime, so that the HTTP clients
can use it without loading it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict, cast

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
#: the rate of raw samples given without one (Hz)
DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_SPEECH_FORMAT = "wav"


class ChatOptions(TypedDict, total=False):
    """What a chat call may set besides its messages, model and ``stream``. Left out,
    the server's defaults apply (``max_tokens``: its ``default_max_tokens``; temperature
    and top_p: 1.0)."""

    #: most tokens to generate
    max_tokens: int | None
    #: 0 is greedy; up to 2
    temperature: float | None
    #: nucleus sampling: the smallest set of tokens whose probabilities reach this
    top_p: float | None
    #: generation ends before any of these strings (not included in the text)
    stop: str | Sequence[str] | None
    #: the same seed and request give the same text
    seed: int | None
    #: a system message put first
    system: str | None


class ToolOptions(TypedDict, total=False):
    """The tools a chat reply may call."""

    #: pydantic classes or OpenAI tool dicts; the result's ``tool_calls`` are typed
    tools: Sequence[object] | None
    #: ``auto`` (the default), ``none``, ``required`` or a tool's name
    tool_choice: str | None
    #: several calls in one reply (default: allowed)
    parallel_tool_calls: bool | None


class ChatCallOptions(ChatOptions, ToolOptions, total=False):
    """What ``chat(messages, model=, stream=, response_format=, **options)`` takes as
    ``options`` on every face: sampling and tools."""


def sampling(options: ChatCallOptions) -> ChatOptions:
    """The sampling part of a chat call's options (what the call layer builds requests from)."""
    return cast(ChatOptions, {k: v for k, v in options.items() if k in ChatOptions.__annotations__})


class EmbedOptions(TypedDict, total=False):
    """``embed(texts, **options)``."""

    #: left out: the only embeddings model served
    model: str | None
    #: truncate each vector to this many dimensions (models trained for it)
    dimensions: int | None


class RerankOptions(TypedDict, total=False):
    """``rerank(query, documents, **options)``."""

    #: left out: the only reranker, else the only embeddings model (cosine similarity)
    model: str | None
    #: keep only the best ``top_n``
    top_n: int | None
    #: each result carries its document's text
    return_documents: bool


class TranscribeOptions(TypedDict, total=False):
    """``transcribe(audio, stream=..., **options)``."""

    #: left out: the only transcription model served
    model: str | None
    #: the spoken language (ISO 639-1); left out, detected
    language: str | None
    #: text that came before, to steer spelling and style
    prompt: str | None
    #: sampling temperature (0: greedy, the default)
    temperature: float | None
    #: into English instead of the spoken language
    translate: bool
    #: the rate of raw samples (Hz; default 16000); files say their own
    sample_rate: int


class SpeechOptions(TypedDict, total=False):
    """``speech(text, stream=..., **options)``."""

    #: left out: the only speech model served
    model: str | None
    #: one of the model's voices; left out, its default
    voice: str | None
    #: wav (default), mp3, flac, opus, aac or pcm
    response_format: str
    #: 0.25 to 4.0 (1.0, the default, is the model's own pace)
    speed: float | None


def check_options(
    options: Mapping[str, object], declared: type = ChatOptions, call: str = "chat"
) -> None:
    """Refuse keywords that ``declared`` does not list: ``**options`` would otherwise take
    any name at run time and drop it unseen (chat's other request fields go in
    ``extra_body``)."""
    known = declared.__annotations__
    unknown = sorted(set(options) - set(known))
    if unknown:
        hint = " (other request fields: extra_body)" if call == "chat" else ""
        raise TypeError(
            f"{call}() got unexpected keyword arguments {', '.join(unknown)}; its options "
            f"are {', '.join(known)}{hint}"
        )
