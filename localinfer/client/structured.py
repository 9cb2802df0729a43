"""Structured output and tools for the faces: pydantic models in, typed results out.

``response_format`` may be a pydantic model class (sent as a strict ``json_schema``, the
reply parsed back into it) or an OpenAI ``response_format`` dict; ``tools`` may be pydantic
model classes (the class name is the function's name, its docstring the description)
or OpenAI tool dicts. The Client and the Engine share these conversions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from localinfer.client.results import ToolCallResult


def is_model_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def response_format_body(response_format: object) -> dict[str, Any]:
    """The wire ``response_format`` for a pydantic class or an OpenAI dict."""
    if is_model_class(response_format):
        assert isinstance(response_format, type) and issubclass(response_format, BaseModel)
        return {
            "type": "json_schema",
            "json_schema": {
                "name": response_format.__name__[:64],
                "schema": response_format.model_json_schema(),
                "strict": True,
            },
        }
    if isinstance(response_format, Mapping):
        return dict(response_format)
    raise TypeError("response_format is a pydantic model class or an OpenAI response_format dict")


def tool_body(tool: object) -> dict[str, Any]:
    """One tool as an OpenAI definition."""
    if is_model_class(tool):
        assert isinstance(tool, type) and issubclass(tool, BaseModel)
        function: dict[str, Any] = {
            "name": tool.__name__,
            "parameters": tool.model_json_schema(),
        }
        if tool.__doc__:
            function["description"] = tool.__doc__.strip()
        return {"type": "function", "function": function}
    if isinstance(tool, Mapping):
        return dict(tool)
    raise TypeError("a tool is a pydantic model class or an OpenAI tool dict")


def tools_body(tools: Sequence[object]) -> list[dict[str, Any]]:
    return [tool_body(tool) for tool in tools]


def tool_call_results(raw: object) -> tuple[ToolCallResult, ...]:
    """A reply's ``tool_calls`` (wire shape) as typed results."""
    calls = []
    for call in raw if isinstance(raw, list) else []:
        function = call.get("function", {}) if isinstance(call, Mapping) else {}
        arguments = str(function.get("arguments") or "{}")
        calls.append(
            ToolCallResult(
                id=str(call.get("id", "")),
                name=str(function.get("name", "")),
                arguments=json.loads(arguments),
            )
        )
    return tuple(calls)


def parse_reply(response_format: object, text: str) -> Any:
    """The reply parsed into the pydantic class (the text itself for a dict format)."""
    if is_model_class(response_format):
        assert isinstance(response_format, type) and issubclass(response_format, BaseModel)
        return response_format.model_validate_json(text)
    return json.loads(text)
