"""Output constraints as llama.cpp grammars, enforced per sequence of a batch."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from llamacpp_support import ask, run
from localinfer_llamacpp.constraints import constraint_grammar, gbnf_literal
from localinfer_llamacpp.handler import LlamaCppChatHandler

from localinfer.errors import InvalidRequest
from localinfer.handlers.tasks import GenerationRequest

SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
)


@dataclass(frozen=True)
class OutputConstraint:
    """The chat-surface contract (``localinfer.handlers.generation.constraints``)."""

    json_schema: str
    prefix: str = ""
    suffix: str = ""
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class ConstrainedRequest(GenerationRequest):
    """A request with the chat-surface ``constraint`` field (on every request once merged)."""

    constraint: OutputConstraint | None = None


def constrained(text: str, constraint: OutputConstraint) -> ConstrainedRequest:
    return ConstrainedRequest(
        messages=({"role": "user", "content": text},),
        max_new_tokens=128,
        temperature=0.0,
        constraint=constraint,
    )


def test_literals_are_escaped() -> None:
    assert gbnf_literal('a "b"\n\\') == '"a \\"b\\"\\n\\\\"'


def test_grammar_wraps_the_json_in_prefix_and_suffix() -> None:
    grammar = constraint_grammar(SCHEMA, "<tool_call>\n", "\n</tool_call>", True)
    assert grammar.startswith('root ::= block ("\\n" block)*\nblock ::= "<tool_call>\\n" payload')
    assert "payload ::=" in grammar


def test_a_schema_that_cannot_be_converted_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequest):
        constraint_grammar("[not json", "", "", False)


def test_each_sequence_keeps_its_own_grammar(handler: LlamaCppChatHandler) -> None:
    free = ask("Tell me about Paris.", max_new_tokens=24)
    alone = run(handler, free)[0].result.text
    json_item, tool_item, free_item = run(
        handler,
        constrained("Describe Paris as JSON.", OutputConstraint(SCHEMA)),
        constrained(
            "Look up Paris.",
            OutputConstraint(SCHEMA, prefix="<tool_call>\n", suffix="\n</tool_call>"),
        ),
        free,
    )
    answer = json.loads(json_item.result.text)
    assert set(answer) == {"city", "population"} and isinstance(answer["population"], int)
    call = tool_item.result.text
    assert call.startswith("<tool_call>\n") and call.endswith("\n</tool_call>")
    assert set(json.loads(call[len("<tool_call>\n") : -len("\n</tool_call>")])) == {
        "city",
        "population",
    }
    assert free_item.result.text == alone  # the grammars of the others left it alone


def test_a_string_refuses_a_raw_control_character(handler: LlamaCppChatHandler) -> None:
    """JSON forbids a raw newline in a string; llama-cpp-python's converter allowed it."""
    from localinfer_llamacpp.sampling import SamplerChain, grammar_sampler

    model = handler.model
    assert model is not None
    grammar = grammar_sampler(model.lib, model.vocab, constraint_grammar(SCHEMA, "", "", False))
    chain = SamplerChain(model.lib, ask("x"), model.n_vocab, grammar)
    try:
        for token in model.tokenize('{"city": "Pa', add_special=False):
            assert chain._allows(token)
            model.lib.llama_sampler_accept(grammar, token)
        (newline,) = model.tokenize("\n", add_special=False)
        (tab,) = model.tokenize("\t", add_special=False)
        (quote,) = model.tokenize('"', add_special=False)
        assert not chain._allows(newline) and not chain._allows(tab)
        assert chain._allows(quote)  # the grammar still runs: the string may close
    finally:
        chain.close()
