"""A chat completion request as the handler's :class:`GenerationRequest`.

``response_format`` becomes an :class:`OutputConstraint` here (checked against the
schema limits, so an oversized schema is a 400 before anything is queued); tools,
``tool_choice`` and ``parallel_tool_calls`` travel to the handler, which renders them with
its chat template and enforces a required or named choice in its model family's syntax.
"""

from __future__ import annotations

from typing import Any

from localinfer.handlers.generation.constraints import OutputConstraint, canonical_schema
from localinfer.handlers.generation.tool_calls import tool_parameters
from localinfer.server import protocol as p

#: what ``json_object`` asks for: any JSON object
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def response_constraint(body: p.ChatCompletionRequest) -> OutputConstraint | None:
    """The constraint ``response_format`` asks for (None for text)."""
    form = body.response_format
    if form is None or isinstance(form, p.TextFormat):
        return None
    if isinstance(form, p.JsonObjectFormat):
        return OutputConstraint(json_schema=canonical_schema(ANY_OBJECT))
    return OutputConstraint(json_schema=canonical_schema(form.json_schema.schema_))


def tool_definitions(body: p.ChatCompletionRequest) -> tuple[dict[str, Any], ...] | None:
    """The tools as plain OpenAI definitions, each parameter schema checked against the limits."""
    if not body.tools:
        return None
    tools = []
    for i, tool in enumerate(body.tools):
        definition = tool.model_dump(exclude_none=True)
        canonical_schema(tool_parameters(definition), param=f"tools.{i}.function.parameters")
        tools.append(definition)
    return tuple(tools)


def template_messages(
    body: p.ChatCompletionRequest, texts: list[str]
) -> tuple[dict[str, Any], ...]:
    return tuple(m.as_template_message(t) for m, t in zip(body.messages, texts, strict=True))
