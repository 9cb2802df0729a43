"""The chat wire format for both clients: the request body, the ``chat.completion`` result,
and the fold of ``chat.completion.chunk`` events into deltas and a result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from localinfer.client._wire import SSEDecoder, event_payload, timing_of, usage_of
from localinfer.client.results import (
    ChatResult,
)
from localinfer.client.structured import response_format_body, tool_call_results, tools_body

# -- chat ------------------------------------------------------------------------------------


#: ``tool_choice`` values that are not a function's name
_CHOICES = ("auto", "none", "required")


def chat_body(
    model: str,
    messages: list[dict[str, object]],
    *,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    params: Mapping[str, object],
) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "messages": messages, "stream": stream}
    optional = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "stop": stop if stop is None or isinstance(stop, str) else list(stop),
        "seed": seed,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in params.items():
        if key == "response_format" and value is not None:
            value = response_format_body(value)
        elif key == "tools" and isinstance(value, list | tuple):
            value = tools_body(value)
        elif isinstance(value, str) and key == "tool_choice" and value not in _CHOICES:
            value = {"type": "function", "function": {"name": value}}  # a function's name
        body[key] = value
    return body


def chat_result(body: Mapping[str, object], started: float) -> ChatResult:
    """A non-streamed ``chat.completion`` body as a :class:`ChatResult`."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message", {}) if isinstance(choice, Mapping) else {}
    text = message.get("content") if isinstance(message, Mapping) else None
    return ChatResult(
        text=str(text or ""),
        model=str(body.get("model", "")),
        finish_reason=str(choice.get("finish_reason") or "") if isinstance(choice, Mapping) else "",
        usage=usage_of(body.get("usage")),
        timing=timing_of(body.get("performance"), (time.perf_counter() - started) * 1e3),
        id=str(body.get("id", "")),
        tool_calls=tool_call_results(
            message.get("tool_calls") if isinstance(message, Mapping) else None
        ),
    )


class ChatAccumulator:
    """Folds ``chat.completion.chunk`` events into text deltas and, at ``[DONE]``, a result."""

    def __init__(self, model: str, started: float):
        self.model = model
        self.started = started
        self.first_token_at: float | None = None
        self.parts: list[str] = []
        self.finish_reason = ""
        self.id = ""
        self.usage: object = None
        self.performance: object = None
        self.done = False
        self._decoder = SSEDecoder()
        self._calls: dict[int, dict[str, str]] = {}

    def feed_line(self, line: str) -> str | None:
        """The text delta carried by this line's event, if it completes one."""
        data = self._decoder.feed(line)
        if data is None:
            return None
        if data == "[DONE]":
            self.done = True
            return None
        return self.feed(event_payload(data))

    def feed(self, chunk: object) -> str | None:
        if not isinstance(chunk, Mapping):
            return None
        self.id = str(chunk.get("id", self.id))
        self.model = str(chunk.get("model", self.model))
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        if chunk.get("performance") is not None:
            self.performance = chunk["performance"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        if isinstance(delta, Mapping) and isinstance(delta.get("tool_calls"), list):
            self._add_calls(delta["tool_calls"])
        text = delta.get("content") if isinstance(delta, Mapping) else None
        if not text:
            return None
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.parts.append(str(text))
        return str(text)

    def _add_calls(self, deltas: list[object]) -> None:
        """Fold streamed tool-call deltas (id and name once, arguments in fragments)."""
        for delta in deltas:
            if not isinstance(delta, Mapping):
                continue
            call = self._calls.setdefault(
                int(delta.get("index", 0)), {"id": "", "name": "", "arguments": ""}
            )
            function = delta.get("function")
            call["id"] += str(delta.get("id") or "")
            if isinstance(function, Mapping):
                call["name"] += str(function.get("name") or "")
                call["arguments"] += str(function.get("arguments") or "")

    def result(self) -> ChatResult:
        now = time.perf_counter()
        first = None if self.first_token_at is None else (self.first_token_at - self.started) * 1e3
        return ChatResult(
            text="".join(self.parts),
            model=self.model,
            finish_reason=self.finish_reason,
            usage=usage_of(self.usage),
            timing=timing_of(self.performance, (now - self.started) * 1e3, first),
            id=self.id,
            tool_calls=tool_call_results(
                [
                    {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for _, c in sorted(self._calls.items())
                ]
            ),
        )
