"""The limits a request must keep, checked in one place for HTTP and ``Engine`` alike.

Shape (types, ranges of single fields) is each face's own business; these are the
server's limits on size and cost, read from :class:`~localinfer.config.Settings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from localinfer.config import Settings
from localinfer.errors import InvalidRequest, RequestTooLarge


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How large and how costly one request may be."""

    default_max_tokens: int
    max_tokens_limit: int
    max_messages: int
    max_input_chars: int
    max_embedding_inputs: int
    max_audio_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            default_max_tokens=settings.default_max_tokens,
            max_tokens_limit=settings.max_tokens_limit,
            max_messages=settings.max_messages,
            max_input_chars=settings.max_input_chars,
            max_embedding_inputs=settings.max_embedding_inputs,
            max_audio_seconds=settings.max_audio_seconds,
        )

    def token_budget(self, asked: int | None) -> int:
        """The tokens a generation may produce: ``asked`` (at most the limit) or the default."""
        if asked is not None and asked < 1:
            raise InvalidRequest(
                f"max_tokens is {asked}; it must be at least 1", param="max_tokens"
            )
        if asked is not None and asked > self.max_tokens_limit:
            raise InvalidRequest(
                f"max_tokens is {asked}; the largest accepted is {self.max_tokens_limit}",
                param="max_tokens",
            )
        return asked or self.default_max_tokens

    def check_prompt(self, texts: Sequence[str], messages: int = 0) -> None:
        """A prompt (or chat messages, ``messages`` of them) within the size limits."""
        if messages > self.max_messages:
            raise RequestTooLarge(
                f"{messages} messages; at most {self.max_messages} are accepted", param="messages"
            )
        chars = sum(len(t) for t in texts)
        if chars > self.max_input_chars:
            raise RequestTooLarge(
                f"the input is {chars} characters; at most {self.max_input_chars} are accepted"
            )

    def check_texts(
        self, texts: Sequence[str], *, param: str = "input", most: int | None = None
    ) -> None:
        """Texts to embed (or generate from, one each): some, not too many, none empty or
        too long. ``param`` names them in errors; ``most`` defaults to the embeddings limit."""
        most = self.max_embedding_inputs if most is None else most
        if not texts:
            raise InvalidRequest(f"{param} must not be empty", param=param)
        if len(texts) > most:
            raise RequestTooLarge(f"{len(texts)} inputs; at most {most} per request", param=param)
        for index, text in enumerate(texts):
            if not text:
                raise InvalidRequest(f"{param}[{index}] is an empty string", param=param)
            if len(text) > self.max_input_chars:
                raise RequestTooLarge(
                    f"{param}[{index}] is {len(text)} characters; at most "
                    f"{self.max_input_chars} are accepted",
                    param=param,
                )

    def check_audio(self, samples: int, sample_rate: int, *, param: str | None = None) -> None:
        """Audio of ``samples`` at ``sample_rate`` Hz no longer than the limit."""
        if sample_rate <= 0:
            raise InvalidRequest("sample_rate must be positive", param="sample_rate")
        if samples / sample_rate > self.max_audio_seconds:
            raise RequestTooLarge(
                f"the audio is longer than {self.max_audio_seconds:g} s", param=param
            )
