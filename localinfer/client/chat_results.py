"""What a chat call returns: the reply with its tool calls, token usage and timing, and the
one-line clip every result's ``repr`` shortens long text with.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel


M = TypeVar("M", bound="BaseModel")


def clip(text: str, width: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timing:
    """Where the time of one generation went, in milliseconds (server-side) plus the total
    the caller waited."""

    queue_ms: float
    prefill_ms: float
    decode_ms: float
    tokens_per_second: float
    #: wall time from sending the request to the whole reply, as the caller saw it
    total_ms: float
    #: streams only: wall time until the first text arrived
    first_token_ms: float | None = None

    def summary(self) -> str:
        parts = [
            f"{self.tokens_per_second:.1f} tok/s",
            f"queue {self.queue_ms:.1f} ms",
            f"prefill {self.prefill_ms:.1f} ms",
            f"decode {self.decode_ms:.1f} ms",
        ]
        if self.first_token_ms is not None:
            parts.append(f"first token {self.first_token_ms:.1f} ms")
        parts.append(f"total {self.total_ms:.1f} ms")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class ToolCallResult:
    """A function call the model asked for; ``arguments`` already parsed from JSON."""

    id: str
    name: str
    arguments: dict[str, Any]

    def parse(self, model: type[M]) -> M:
        """The arguments as an instance of ``model`` (a pydantic class)."""
        return model.model_validate(self.arguments)

    def message(self) -> dict[str, Any]:
        """This call as it goes back into the history (an assistant message's tool_calls)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole chat reply. ``str(result)`` is its text; ``tool_calls`` the calls it made."""

    text: str
    model: str
    finish_reason: str
    usage: Usage
    timing: Timing
    id: str = ""
    tool_calls: tuple[ToolCallResult, ...] = ()

    def assistant_message(self) -> dict[str, Any]:
        """The reply as the next request's assistant message (tool calls included)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.message() for call in self.tool_calls]
        return message

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return (
            f"ChatResult(text={clip(self.text, 60)!r}, model={self.model!r}, "
            f"finish_reason={self.finish_reason!r}, tokens={self.usage.completion_tokens})"
        )

    def _repr_markdown_(self) -> str:
        footer = (
            f"{self.model} · {self.usage.prompt_tokens} prompt + "
            f"{self.usage.completion_tokens} completion tokens · {self.finish_reason} · "
            f"{self.timing.summary()}"
        )
        return f"{self.text or '*(empty reply)*'}\n\n---\n*{html.escape(footer)}*"
