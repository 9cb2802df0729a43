"""A chat conversation as data: its turns, its settings, and its JSON file.

Pure (no Textual, no I/O beyond reading and writing the file), so the chat screen stays
about drawing and the file format is tested on its own. The file says what it is
(``"format": "localinfer.conversation"``, ``"version": 1``) so a later version can read
old files, and a file that is not a conversation is refused with a reason. Images and
tool calls are optional keys of a message, so files without them still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast

FORMAT = "localinfer.conversation"
VERSION = 1

Role = Literal["user", "assistant"]
_ROLES: tuple[Role, ...] = ("user", "assistant")

T = TypeVar("T")


class ConversationError(ValueError):
    """A file that cannot be read as a conversation; the message says why."""


@dataclass(frozen=True)
class ReplyStats:
    """How one reply went, as the person chatting saw it."""

    #: milliseconds from sending to the first text (None: no text came)
    first_token_ms: float | None = None
    tokens_per_second: float | None = None
    completion_tokens: int | None = None
    #: "stop", "length", ... or "stopped" when the person stopped it
    finish_reason: str = ""

    def summary(self) -> str:
        parts = []
        if self.first_token_ms is not None:
            parts.append(f"first token {self.first_token_ms:.0f} ms")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:.1f} tok/s")
        if self.completion_tokens is not None:
            parts.append(f"{self.completion_tokens} tokens")
        if self.finish_reason:
            parts.append(self.finish_reason)
        return " · ".join(parts)


@dataclass(frozen=True)
class Attachment:
    """An image sent with a user message: its name for the screen, its ``data:`` URL for
    the request (kept inline so a saved conversation does not depend on the file)."""

    name: str
    url: str

    def part(self) -> dict[str, object]:
        return {"type": "image_url", "image_url": {"url": self.url}}


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant reply asked for; ``arguments`` is its JSON text."""

    id: str
    name: str
    arguments: str

    def message(self) -> dict[str, object]:
        """The call as it goes back into the history (OpenAI wire shape)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str
    stats: ReplyStats | None = None
    images: tuple[Attachment, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()

    def message(self) -> dict[str, object]:
        """This turn as an OpenAI message: images before the text (as vision chat
        templates expect); an assistant's tool calls beside its (maybe empty) text."""
        if self.images:
            parts = [image.part() for image in self.images]
            return {"role": self.role, "content": [*parts, {"type": "text", "text": self.content}]}
        if self.tool_calls:
            return {
                "role": self.role,
                "content": self.content or None,
                "tool_calls": [call.message() for call in self.tool_calls],
            }
        return {"role": self.role, "content": self.content}


@dataclass
class Conversation:
    """Turns plus the settings they were made with (restored on load)."""

    model: str | None = None
    system: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    turns: list[Turn] = field(default_factory=list)

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)

    def messages(self) -> list[dict[str, object]]:
        """The OpenAI ``messages`` for the next request: the system prompt, then the turns."""
        messages: list[dict[str, object]] = []
        if self.system.strip():
            messages.append({"role": "system", "content": self.system})
        messages += [t.message() for t in self.turns]
        return messages

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "system": self.system,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "messages": [_turn_dict(t) for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: object) -> Conversation:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConversationError(f'not a localinfer conversation (no "format": {FORMAT!r})')
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ConversationError(f"conversation version {version!r} is newer than {VERSION}")
        messages = data.get("messages", [])
        if not isinstance(messages, list):
            raise ConversationError('"messages" must be a list')
        return cls(
            model=_optional(data, "model", str),
            system=_optional(data, "system", str) or "",
            temperature=_number(data, "temperature"),
            max_tokens=_optional(data, "max_tokens", int),
            turns=[_turn(i, m) for i, m in enumerate(messages)],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Conversation:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConversationError(f"not JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the file (UTF-8), creating its folder; returns the path written."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_json(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        target = Path(path).expanduser()
        try:
            text = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConversationError(f"cannot read {target}: {exc.strerror or exc}") from None
        return cls.from_json(text)


def _turn_dict(turn: Turn) -> dict[str, object]:
    data: dict[str, object] = {"role": turn.role, "content": turn.content}
    if turn.stats is not None:
        data["stats"] = {
            "first_token_ms": turn.stats.first_token_ms,
            "tokens_per_second": turn.stats.tokens_per_second,
            "completion_tokens": turn.stats.completion_tokens,
            "finish_reason": turn.stats.finish_reason,
        }
    if turn.images:
        data["images"] = [{"name": i.name, "url": i.url} for i in turn.images]
    if turn.tool_calls:
        data["tool_calls"] = [c.message() for c in turn.tool_calls]
    return data


def _turn(index: int, raw: object) -> Turn:
    if not isinstance(raw, Mapping):
        raise ConversationError(f"message {index} is not an object")
    role, content = raw.get("role"), raw.get("content")
    if role not in _ROLES:
        raise ConversationError(f"message {index}: role must be user or assistant, not {role!r}")
    if not isinstance(content, str):
        raise ConversationError(f"message {index}: content must be text")
    stats = raw.get("stats")
    return Turn(
        role=cast(Role, role),
        content=content,
        stats=None if not isinstance(stats, Mapping) else _stats(stats),
        images=tuple(_attachment(index, i) for i in _list(index, raw, "images")),
        tool_calls=tuple(_tool_call(index, c) for c in _list(index, raw, "tool_calls")),
    )


def _list(index: int, raw: Mapping[str, object], key: str) -> list[object]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConversationError(f"message {index}: {key} must be a list")
    return value


def _attachment(index: int, raw: object) -> Attachment:
    if not isinstance(raw, Mapping):
        raise ConversationError(f"message {index}: an image is not an object")
    name, url = raw.get("name"), raw.get("url")
    if not isinstance(name, str) or not isinstance(url, str) or not url.startswith("data:"):
        raise ConversationError(f"message {index}: an image needs a name and a data: url")
    return Attachment(name, url)


def _tool_call(index: int, raw: object) -> ToolCall:
    function = raw.get("function") if isinstance(raw, Mapping) else None
    if not isinstance(raw, Mapping) or not isinstance(function, Mapping):
        raise ConversationError(f"message {index}: a tool call needs a function")
    name, arguments = function.get("name"), function.get("arguments")
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise ConversationError(f"message {index}: a tool call needs a name and arguments")
    return ToolCall(str(raw.get("id", "")), name, arguments)


def _stats(raw: Mapping[str, object]) -> ReplyStats:
    return ReplyStats(
        first_token_ms=_number(raw, "first_token_ms"),
        tokens_per_second=_number(raw, "tokens_per_second"),
        completion_tokens=_optional(raw, "completion_tokens", int),
        finish_reason=_optional(raw, "finish_reason", str) or "",
    )


def _optional(data: Mapping[str, object], key: str, kind: type[T]) -> T | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConversationError(f"{key!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _number(data: Mapping[str, object], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConversationError(f"{key!r} must be a number, not {type(value).__name__}")
    return float(value)
