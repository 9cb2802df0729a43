"""Output constraints (``response_format``, forced tool calls) as llama.cpp grammars.

An ``OutputConstraint`` (``prefix JSON suffix``, or several such blocks when ``repeat``)
becomes GBNF through llama-cpp-python's JSON-schema converter plus a root rule for the
literal text around the JSON; the grammar sampler then joins that one sequence's
sampler chain, so every sequence of a batch has its own grammar state.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol

from localinfer.errors import InvalidRequest
from localinfer_llamacpp.model import GgufModel
from localinfer_llamacpp.sampling import grammar_sampler

#: blocks of a ``repeat`` constraint are separated by this (the chat-surface contract)
REPEAT_SEPARATOR = "\n"

#: whitespace between JSON tokens: llama.cpp's own converter's rule (``llama-server``),
#: newlines and indentation included, where llama-cpp-python's port allows one space. A
#: model that pretty-prints keeps its own tokens instead of having them refused (each
#: refusal costs a pass of the grammar over the whole vocabulary, see ``sampling``)
SPACE_RULE = '| " " | "\\n"{1,2} [ \\t]{0,20}'


#: a JSON string's character: JSON's own rule (RFC 8259: no raw control character), where
#: llama-cpp-python's port writes ``[^"\\]`` and so let a raw newline into a string (three
#: invalid answers in a 30-minute soak); llama.cpp's own converter excludes them too
CHAR_RULE = (
    r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]'
    r" [0-9a-fA-F])"
)


class Constraint(Protocol):
    """What the engine reads of ``localinfer.handlers.generation.constraints.OutputConstraint``."""

    @property
    def json_schema(self) -> str: ...

    @property
    def prefix(self) -> str: ...

    @property
    def suffix(self) -> str: ...

    @property
    def repeat(self) -> bool: ...


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


@functools.lru_cache(maxsize=64)
def constraint_grammar(json_schema: str, prefix: str, suffix: str, repeat: bool) -> str:
    """The GBNF grammar (root rule ``root``) of ``prefix JSON suffix`` blocks."""
    from llama_cpp import llama_grammar

    grammars: Any = llama_grammar  # untyped
    try:
        schema = json.loads(json_schema)
        converter = grammars.SchemaConverter(
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        converter._rules["space"] = SPACE_RULE
        schema = converter.resolve_refs(schema, "input")
        payload = converter.visit(schema, "payload")
        if "char" in converter._rules:  # every string rule refers to it by name
            converter._rules["char"] = CHAR_RULE
        rules = converter.format_grammar()
    except Exception as exc:  # the converter raises plain errors for what it cannot express
        raise InvalidRequest(
            f"the JSON schema cannot be turned into a grammar: {exc}", param="response_format"
        ) from exc
    parts = [gbnf_literal(prefix)] if prefix else []
    parts.append(payload)
    if suffix:
        parts.append(gbnf_literal(suffix))
    block = " ".join(parts)
    if repeat:
        root = f"root ::= block ({gbnf_literal(REPEAT_SEPARATOR)} block)*\nblock ::= {block}"
    else:
        root = f"root ::= {block}"
    return f"{root}\n{rules}\n"


def constraint_sampler(model: GgufModel, constraint: Constraint | None) -> Any:
    """A grammar sampler enforcing ``constraint`` for one sequence, or None without one."""
    if constraint is None:
        return None
    gbnf = constraint_grammar(
        constraint.json_schema, constraint.prefix, constraint.suffix, constraint.repeat
    )
    return grammar_sampler(model.lib, model.vocab, gbnf)
