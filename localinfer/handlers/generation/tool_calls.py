"""Tool calls in a model family's own syntax: rendering, enforcing and parsing them.

One :class:`ToolCallFormat` per family, chosen from the chat template (as vLLM chooses its
tool parser), reusable by every engine:

- **Hermes / Qwen** (``<tool_call>`` in the template; also the fallback for templates that
  know no tools, which then get Hermes instructions in a system message):
  ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``, one block per call.
- **Llama 3** (``<|python_tag|>`` / ``ipython`` in the template): a bare
  ``{"name": ..., "parameters": {...}}`` object per call, one per line.

``tool_choice: "required"`` and a named function become an :class:`OutputConstraint` in
that syntax (:meth:`ToolCallFormat.constraint`), so the arguments always validate.
:class:`ToolCallFilter` turns streamed text into content and complete :class:`ToolCall` s.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from localinfer.errors import InvalidRequest
from localinfer.handlers.generation.constraints import OutputConstraint, canonical_schema
from localinfer.handlers.tasks import GenerationRequest, ToolCall


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_name(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", {}).get("name", ""))


def tool_parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The function's parameter schema (an empty object schema when it takes none)."""
    parameters = tool.get("function", {}).get("parameters")
    return dict(parameters) if parameters else {"type": "object", "properties": {}}


_HERMES_INSTRUCTIONS = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user "
    "query. Don't make assumptions about what values to plug into functions.\n<tools>\n"
    "{tools}\n</tools>\n\nFor each function call, return a json object with function name "
    "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


@dataclass(frozen=True, slots=True)
class ToolCallFormat:
    """A model family's call syntax: ``prefix {"name", <arguments_key>} suffix`` per call."""

    name: str
    prefix: str
    suffix: str
    arguments_key: str

    def constraint(
        self, tools: Sequence[Mapping[str, Any]], choice: str, parallel: bool
    ) -> OutputConstraint | None:
        """The constraint for ``required`` or a named function; None for ``auto`` / ``none``."""
        if choice in ("auto", "none"):
            return None
        chosen = (
            list(tools) if choice == "required" else [t for t in tools if tool_name(t) == choice]
        )
        if not chosen:
            raise InvalidRequest(
                f"tool_choice names {choice!r}, which is not among the tools", param="tool_choice"
            )
        cases = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool_name(tool)},
                    self.arguments_key: tool_parameters(tool),
                },
                "required": ["name", self.arguments_key],
                "additionalProperties": False,
            }
            for tool in chosen
        ]
        schema = cases[0] if len(cases) == 1 else {"anyOf": cases}
        return OutputConstraint(
            json_schema=canonical_schema(schema, param="tools"),
            prefix=self.prefix,
            suffix=self.suffix,
            repeat=parallel and choice == "required",
        )

    def instructions(self, tools: Sequence[Mapping[str, Any]]) -> str:
        """A system message teaching this syntax, for templates that do not render tools."""
        listed = "\n".join(json.dumps(dict(tool), ensure_ascii=False) for tool in tools)
        return _HERMES_INSTRUCTIONS.format(tools=listed)

    def render_calls(self, calls: Sequence[Mapping[str, Any]]) -> str:
        """An assistant message's ``tool_calls`` as text in this syntax (for such templates)."""
        blocks = []
        for call in calls:
            function = call.get("function", {})
            body = {"name": function.get("name"), self.arguments_key: _arguments(function)}
            blocks.append(self.prefix + json.dumps(body, ensure_ascii=False) + self.suffix)
        return "\n".join(blocks)

    def parse_call(self, text: str) -> ToolCall | None:
        """One call's JSON text as a ToolCall; None when it is not a call."""
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return None
        arguments = body.get(self.arguments_key, body.get("arguments", body.get("parameters", {})))
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        return ToolCall(new_call_id(), body["name"], json.dumps(arguments, ensure_ascii=False))


HERMES = ToolCallFormat("hermes", "<tool_call>\n", "\n</tool_call>", "arguments")
LLAMA3 = ToolCallFormat("llama3", "", "", "parameters")


def format_for_template(chat_template: str | None) -> tuple[ToolCallFormat, bool]:
    """The family's format, and whether the template renders ``tools`` itself."""
    template = chat_template or ""
    renders_tools = "tools" in template
    if "<tool_call>" in template:
        return HERMES, renders_tools
    if "<|python_tag|>" in template or "ipython" in template:
        return LLAMA3, renders_tools
    return HERMES, False


def calls_tools(request: GenerationRequest) -> bool:
    """Whether the model may answer with tool calls: tools offered, and not ``none``."""
    return bool(request.tools) and request.tool_choice != "none"


def with_tool_constraint(request: GenerationRequest, form: ToolCallFormat) -> GenerationRequest:
    """``request`` with a required or named ``tool_choice`` turned into the family's
    grammar (every engine enforces it as it enforces ``response_format``)."""
    if not calls_tools(request) or not request.tools:
        return request
    wanted = form.constraint(request.tools, request.tool_choice, request.parallel_tool_calls)
    if wanted is None:
        return request
    if request.constraint is not None:
        raise InvalidRequest(
            "a required or named tool_choice cannot be combined with a response_format",
            param="tool_choice",
        )
    return replace(request, constraint=wanted)


def _arguments(function: Mapping[str, Any]) -> Any:
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def messages_for_template(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    form: ToolCallFormat,
    renders_tools: bool,
) -> list[dict[str, Any]]:
    """The history as the template wants it.

    Templates that render tools get ``tool_calls`` arguments as objects (they ``tojson``
    them); others get the calls written out in the family's syntax, tool results as
    ``<tool_response>`` text, and the tool instructions as (part of) the system message.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        copy = dict(message)
        calls = copy.get("tool_calls")
        if renders_tools:
            if calls:
                copy["tool_calls"] = [
                    {
                        **call,
                        "function": {
                            **call.get("function", {}),
                            "arguments": _arguments(call.get("function", {})),
                        },
                    }
                    for call in calls
                ]
        else:
            if calls:
                text = copy.get("content") or ""
                copy["content"] = (text + "\n" if text else "") + form.render_calls(calls)
                del copy["tool_calls"]
            if copy.get("role") == "tool":
                copy["content"] = f"<tool_response>\n{copy.get('content') or ''}\n</tool_response>"
                copy.pop("tool_call_id", None)
        if copy.get("content") is None:
            copy["content"] = ""
        out.append(copy)
    if tools and not renders_tools:
        instructions = form.instructions(tools)
        if out and out[0].get("role") == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{instructions}"
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


class ToolCallFilter:
    """Streamed text in; content text and complete :class:`ToolCall` s out, in order.

    Hermes: text outside ``<tool_call>`` blocks is content; a possible start of the marker
    is held back until the next piece settles it; a block that is not a valid call is
    released as content. Llama 3: an output that starts with ``{`` is held to the end and
    parsed as one call per line; otherwise it is all content.
    """

    def __init__(self, form: ToolCallFormat) -> None:
        self._form = form
        self._buffer = ""
        self._inside = False
        self._undecided = not form.prefix  # llama3: decided by the first non-space character
        self._bare_json = False
        self.calls: list[ToolCall] = []

    def push(self, text: str) -> list[str | ToolCall]:
        self._buffer += text
        if not self._form.prefix:
            return self._push_bare()
        out: list[str | ToolCall] = []
        start, end = self._form.prefix.strip(), self._form.suffix.strip()
        while True:
            if not self._inside:
                at = self._buffer.find(start)
                if at < 0:
                    keep = _partial_suffix(self._buffer, start)
                    released = self._buffer[: len(self._buffer) - keep]
                    if released.strip():  # whitespace waits: it may only separate calls
                        self._buffer = self._buffer[len(released) :]
                        out.append(released)
                    return out
                if self._buffer[:at].strip():
                    out.append(self._buffer[:at])
                self._buffer = self._buffer[at + len(start) :]
                self._inside = True
            else:
                at = self._buffer.find(end)
                if at < 0:
                    return out
                body, self._buffer = self._buffer[:at], self._buffer[at + len(end) :]
                self._inside = False
                out.append(self._call_or_text(body, start + body + end))

    def flush(self) -> list[str | ToolCall]:
        rest, self._buffer = self._buffer, ""
        if not rest.strip():
            return [] if self.calls or not rest else [rest]
        if self._bare_json:
            parsed = [self._form.parse_call(line) for line in rest.splitlines() if line.strip()]
            if parsed and all(call is not None for call in parsed):
                calls = [call for call in parsed if call is not None]
                self.calls.extend(calls)
                return list(calls)
            return [rest]
        if self._inside:  # an unclosed block (cut by the token budget or a stop string)
            start, end = self._form.prefix.strip(), self._form.suffix.strip()
            body = rest[: len(rest) - _partial_suffix(rest, end)]
            piece = self._call_or_text(body, start + rest)
            # a truncated extra call after complete ones is noise, not content
            return [] if isinstance(piece, str) and len(self.calls) > 0 else [piece]
        return [rest]

    def _push_bare(self) -> list[str | ToolCall]:
        if self._undecided:
            stripped = self._buffer.lstrip()
            if not stripped:
                return []
            self._undecided = False
            self._bare_json = stripped.startswith("{")
        if self._bare_json:
            return []
        rest, self._buffer = self._buffer, ""
        return [rest] if rest else []

    def _call_or_text(self, body: str, raw: str) -> str | ToolCall:
        call = self._form.parse_call(body.strip())
        if call is None:
            return raw
        self.calls.append(call)
        return call


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
