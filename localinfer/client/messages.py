"""Prompts and messages as the chat routes and the Engine take them (no HTTP here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from localinfer.errors import InvalidRequest

#: a prompt, or OpenAI-style messages (``{"role": ..., "content": ...}``)
Messages: TypeAlias = "str | Sequence[Mapping[str, object]]"


def chat_messages(messages: Messages, system: str | None = None) -> list[dict[str, object]]:
    """A prompt becomes one user message; ``system`` is put first."""
    if isinstance(messages, str):
        listed: list[dict[str, object]] = [{"role": "user", "content": messages}]
    else:
        listed = [dict(m) for m in messages]
        for index, message in enumerate(listed):
            if "role" not in message or "content" not in message:
                raise InvalidRequest(
                    f"messages[{index}] needs a 'role' and a 'content'", param="messages"
                )
    if system is not None:
        listed.insert(0, {"role": "system", "content": system})
    if not listed:
        raise InvalidRequest("messages must not be empty", param="messages")
    return listed


def content_text(content: object) -> str:
    """A message's text: a string, or the text parts of an OpenAI content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        if len(parts) == len(content) and all(isinstance(t, str) for t in parts):
            return "".join(str(t) for t in parts)
    raise InvalidRequest("message content must be text", param="messages")


def as_texts(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)
