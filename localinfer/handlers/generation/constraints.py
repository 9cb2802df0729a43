"""What a constrained generation must produce, engine-neutral, and the limits on it.

An :class:`OutputConstraint` is what every chat engine enforces by constrained decoding
(xgrammar for transformers, llama.cpp's grammar for the plugin): the output is exactly
``prefix JSON suffix`` — or, with ``repeat``, one or more such blocks separated by a
newline — where JSON validates against ``json_schema``. ``response_format`` becomes a bare
schema; a required or named tool call becomes the family's wrapper around
``{"name": ..., "arguments": ...}``.

The limits are checked before anything is compiled (:func:`check_schema`), so an
oversized or deeply nested schema is a 400 naming the limit, never a stalled worker;
compilation itself is bounded by :data:`MAX_COMPILE_SECONDS` in the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from localinfer.errors import InvalidRequest

#: a schema's canonical JSON text may be at most this long
MAX_SCHEMA_CHARS = 65_536
#: objects/arrays nested deeper than this in a schema are refused
MAX_SCHEMA_DEPTH = 32
#: at most this many subschemas (every dict in the schema counts)
MAX_SCHEMA_NODES = 2_000
#: grammar compilation that takes longer than this is abandoned with a 400
MAX_COMPILE_SECONDS = 10.0
#: at most this many tools per request
MAX_TOOLS = 128
#: separator between blocks of a ``repeat`` constraint (parallel tool calls)
REPEAT_SEPARATOR = "\n"


@dataclass(frozen=True, slots=True)
class OutputConstraint:
    """The output must be ``prefix + JSON + suffix`` (one or more blocks when ``repeat``).

    ``json_schema`` is canonical JSON text (sorted keys, see :func:`canonical_schema`): it
    is also the key of every compiled-grammar cache.
    """

    json_schema: str
    #: literal text before the JSON, e.g. ``"<tool_call>\\n"``
    prefix: str = ""
    #: literal text after the JSON, e.g. ``"\\n</tool_call>"``
    suffix: str = ""
    #: one or more ``prefix JSON suffix`` blocks (separated by ``REPEAT_SEPARATOR``)
    repeat: bool = False


def canonical_schema(schema: Any, param: str = "response_format") -> str:
    """The schema as canonical JSON text (sorted keys, compact), after the limit checks.

    Keys are sorted everywhere except inside ``properties``: their order is the order the
    model writes the fields in (``name`` before ``arguments``, a reason before an answer).
    """
    check_schema(schema, param)
    text = json.dumps(_sorted(schema), separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_SCHEMA_CHARS:
        raise InvalidRequest(
            f"the JSON schema is {len(text)} characters; the limit is {MAX_SCHEMA_CHARS} "
            "(MAX_SCHEMA_CHARS)",
            param=param,
            code="schema_too_large",
        )
    return text


def check_schema(schema: Any, param: str = "response_format") -> None:
    """Refuse schemas that are not objects, nest too deep or have too many parts."""
    if not isinstance(schema, dict):
        raise InvalidRequest("a JSON schema must be an object", param=param)
    nodes = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidRequest(
                f"the JSON schema nests deeper than {MAX_SCHEMA_DEPTH} levels (MAX_SCHEMA_DEPTH)",
                param=param,
                code="schema_too_complex",
            )
        if isinstance(value, dict):
            nodes += 1
            if nodes > MAX_SCHEMA_NODES:
                raise InvalidRequest(
                    f"the JSON schema has more than {MAX_SCHEMA_NODES} subschemas "
                    "(MAX_SCHEMA_NODES)",
                    param=param,
                    code="schema_too_complex",
                )
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _sorted(value: Any, keep_order: bool = False) -> Any:
    if isinstance(value, dict):
        keys = list(value) if keep_order else sorted(value)
        return {
            k: _sorted(value[k], keep_order=(k == "properties" and not keep_order)) for k in keys
        }
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def refuse_unenforced(
    request: Any,
    handler_name: str,
    *,
    constraint: bool = False,
    logprobs: bool = False,
    tools: bool = False,
) -> None:
    """A 400 for each field of a ``GenerationRequest`` this engine cannot honour yet.

    An engine passes True for what it does enforce; anything else the request asks for is
    refused by name, never silently ignored.
    """
    if request.constraint is not None and not constraint:
        raise InvalidRequest(
            f"{handler_name} cannot enforce response_format or a required/named tool_choice yet",
            param="response_format",
        )
    if request.logprobs is not None and not logprobs:
        raise InvalidRequest(f"{handler_name} does not report logprobs yet", param="logprobs")
    if request.tools and request.tool_choice != "none" and not tools:
        raise InvalidRequest(f"{handler_name} does not support tools yet", param="tools")
