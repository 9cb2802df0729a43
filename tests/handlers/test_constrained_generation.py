"""Constrained decoding on a tiny random Llama: every output valid, both transformers paths.

A random model left alone writes noise, so a valid document for every generated schema
is the grammar's doing. Schemas are bounded (enums, ranges, short strings, few items) so
that even noise finishes within the token budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")

from localinfer.errors import InvalidRequest  # noqa: E402
from localinfer.handlers.base import ModelSource  # noqa: E402
from localinfer.handlers.generation.constraints import (  # noqa: E402
    OutputConstraint,
    canonical_schema,
)
from localinfer.handlers.generation.tool_calls import (  # noqa: E402
    HERMES,
    LLAMA3,
    ToolCallFilter,
    format_for_template,
)
from localinfer.handlers.tasks import GenerationRequest, TokenLogprob, ToolCall  # noqa: E402
from localinfer.handlers.transformers_chat import TransformersChatHandler  # noqa: E402
from localinfer.testing import RecordingItem  # noqa: E402

ASK = ({"role": "user", "content": "Tell me about the sea."},)


@pytest.fixture(scope="module")
def sequential(tiny_llama_dir: Path) -> Iterator[TransformersChatHandler]:
    torch.set_num_threads(2)
    handler = TransformersChatHandler(ModelSource(str(tiny_llama_dir)))
    handler.load("cpu")
    yield handler
    handler.close()


@pytest.fixture(scope="module")
def batched(tiny_llama_dir: Path) -> Iterator[TransformersChatHandler]:
    options = {"continuous_batching": True, "max_in_flight": 4}
    handler = TransformersChatHandler(ModelSource(str(tiny_llama_dir), options=options))
    handler.load("cpu")
    yield handler
    handler.close()


def _run(handler: TransformersChatHandler, *requests: GenerationRequest) -> list[RecordingItem]:
    items = [RecordingItem(request) for request in requests]
    handler.process(items)
    deadline = time.monotonic() + 120
    while not all(item.done for item in items):
        assert time.monotonic() < deadline, "generation did not finish"
        time.sleep(0.02)
    for item in items:
        assert item.error is None, item.error
    return items


def _prepared(handler: TransformersChatHandler, request: GenerationRequest) -> Any:
    """The handler's Generation for a request (to ask the engine whether it batches it)."""
    return handler._prepare(RecordingItem(request))


# -- generated schemas ---------------------------------------------------------------------------

_leaf = st.one_of(
    st.just({"type": "boolean"}),
    st.builds(
        lambda low, span: {"type": "integer", "minimum": low, "maximum": low + span},
        st.integers(-50, 50),
        st.integers(0, 500),
    ),
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(0, 6)),
    st.lists(
        st.sampled_from(["red", "green", "a b", "ü", "42"]), min_size=1, max_size=3, unique=True
    ).map(lambda values: {"enum": values}),
    st.just({"type": "null"}),
)


def _object(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        st.from_regex(r"[a-z_]{1,6}", fullmatch=True), children, min_size=1, max_size=3
    ).map(
        lambda props: {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }
    )


def _array(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return children.map(lambda item: {"type": "array", "items": item, "maxItems": 2})


schemas = st.recursive(_leaf, lambda c: st.one_of(_object(c), _array(c)), max_leaves=5).map(
    lambda s: (
        s
        if s.get("type") == "object"
        else {
            "type": "object",
            "properties": {"v": s},
            "required": ["v"],
            "additionalProperties": False,
        }
    )
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=schemas, temperature=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 2**16))
def test_every_constrained_output_is_valid(
    sequential: TransformersChatHandler, schema: dict[str, Any], temperature: float, seed: int
) -> None:
    constraint = OutputConstraint(canonical_schema(schema))
    request = GenerationRequest(
        messages=ASK, max_new_tokens=400, temperature=temperature, seed=seed, constraint=constraint
    )
    (item,) = _run(sequential, request)
    assert item.result.finish_reason == "stop", item.result.text
    jsonschema.validate(json.loads(item.result.text), schema)


BOUNDED = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["town", "city"]},
        "size": {"type": "integer", "minimum": 0, "maximum": 99},
        "name": {"type": "string", "maxLength": 5},
    },
    "required": ["kind", "size", "name"],
    "additionalProperties": False,
}


def test_prefix_suffix_and_repeated_blocks(sequential: TransformersChatHandler) -> None:
    constraint = OutputConstraint(canonical_schema(BOUNDED), "<x>", "</x>", repeat=True)
    request = GenerationRequest(
        messages=ASK, max_new_tokens=400, temperature=1.0, seed=5, constraint=constraint
    )
    (item,) = _run(sequential, request)
    text = item.result.text
    blocks = text.split("\n")
    for block in blocks if item.result.finish_reason == "stop" else blocks[:-1]:
        assert block.startswith("<x>") and block.endswith("</x>")
        jsonschema.validate(json.loads(block[3:-4]), BOUNDED)


def test_batched_rows_match_sequential_and_mix_with_free_text(
    sequential: TransformersChatHandler, batched: TransformersChatHandler
) -> None:
    constraint = OutputConstraint(canonical_schema(BOUNDED))
    constrained = [
        GenerationRequest(
            messages=({"role": "user", "content": f"city {i}"},),
            max_new_tokens=200,
            temperature=0.0,
            constraint=constraint,
        )
        for i in range(3)
    ]
    free = GenerationRequest(messages=ASK, max_new_tokens=40, temperature=0.0)
    engine = batched._engine
    assert engine is not None and engine.can_serve(_prepared(batched, constrained[0]))
    together = _run(batched, *constrained, free)
    alone = _run(sequential, *constrained, free)
    for a, b in zip(together, alone, strict=True):
        assert a.result.text == b.result.text
    for item in together[:3]:
        jsonschema.validate(json.loads(item.result.text), BOUNDED)


def test_logprobs_on_both_paths(
    sequential: TransformersChatHandler, batched: TransformersChatHandler
) -> None:
    request = GenerationRequest(messages=ASK, max_new_tokens=8, temperature=0.0, logprobs=3)
    for handler in (sequential, batched):
        (item,) = _run(handler, request)
        entries = [c for c in item.chunks if isinstance(c, TokenLogprob)]
        assert len(entries) == item.result.completion_tokens
        for entry in entries:
            assert len(entry.top) == 3 and entry.logprob == pytest.approx(entry.top[0].logprob)


TOOLS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "minimum": 0, "maximum": 9},
                    "b": {"type": "integer", "minimum": 0, "maximum": 9},
                },
                "required": ["a", "b"],
            },
        },
    },
)


@pytest.mark.parametrize("path", ["sequential", "batched"])
def test_required_tool_call_is_a_valid_call(path: str, request: pytest.FixtureRequest) -> None:
    handler = request.getfixturevalue(path)
    handler.context_length = 4096  # the tool instructions exceed the tiny model's 512
    payload = GenerationRequest(
        messages=ASK,
        max_new_tokens=200,
        temperature=1.0,
        tools=TOOLS,
        tool_choice="add",
        parallel_tool_calls=False,
    )
    (item,) = _run(handler, payload)
    assert item.result.finish_reason == "tool_calls"
    (call,) = item.result.tool_calls
    assert [c for c in item.chunks if isinstance(c, ToolCall)] == [call]
    assert call.name == "add"
    jsonschema.validate(json.loads(call.arguments), TOOLS[0]["function"]["parameters"])


def test_schema_limits() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(InvalidRequest, match="MAX_SCHEMA_DEPTH"):
        canonical_schema(deep)
    with pytest.raises(InvalidRequest, match="MAX_SCHEMA_NODES"):
        canonical_schema({"anyOf": [{"type": "string"}] * 3000})


def test_canonical_schema_sorts_keys_but_keeps_property_order() -> None:
    text = canonical_schema({"type": "object", "properties": {"z": {"type": "string"}, "a": {}}})
    assert text == '{"properties":{"z":{"type":"string"},"a":{}},"type":"object"}'


# -- tool-call syntax ---------------------------------------------------------------------------


def _feed(form: Any, text: str) -> list[Any]:
    parser, out = ToolCallFilter(form), []
    for ch in text:
        out += parser.push(ch)
    return out + parser.flush()


def test_hermes_calls_are_parsed_from_a_stream() -> None:
    text = (
        'Sure.<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    )
    out = _feed(HERMES, text)
    assert "".join(p for p in out if isinstance(p, str)) == "Sure."
    assert [(c.name, json.loads(c.arguments)) for c in out if isinstance(c, ToolCall)] == [
        ("add", {"a": 1}),
        ("b", {}),
    ]
    assert (
        _feed(HERMES, "a <tool_ b") == ["a", " <tool_ ", "b"]
        or "".join(_feed(HERMES, "a <tool_ b")) == "a <tool_ b"
    )


def test_llama3_calls_and_plain_text() -> None:
    (call,) = _feed(LLAMA3, '{"name": "add", "parameters": {"a": 1}}')
    assert isinstance(call, ToolCall) and json.loads(call.arguments) == {"a": 1}
    assert "".join(_feed(LLAMA3, "hello {")) == "hello {"


def test_family_is_chosen_by_the_template() -> None:
    assert format_for_template("{{ '<tool_call>' }} {{ tools }}") == (HERMES, True)
    assert format_for_template("<|python_tag|> {{ tools }}")[0] is LLAMA3
    assert format_for_template("{{ message['content'] }}") == (HERMES, False)


def test_an_engine_that_cannot_enforce_refuses_by_name() -> None:
    from localinfer.handlers.generation.constraints import refuse_unenforced

    constrained = GenerationRequest(prompt="x", constraint=OutputConstraint('{"type":"object"}'))
    with pytest.raises(InvalidRequest, match="response_format"):
        refuse_unenforced(constrained, "engine")
    with pytest.raises(InvalidRequest, match="logprobs"):
        refuse_unenforced(GenerationRequest(prompt="x", logprobs=0), "engine")
    with pytest.raises(InvalidRequest, match="tools"):
        refuse_unenforced(GenerationRequest(prompt="x", tools=TOOLS), "engine")
    refuse_unenforced(GenerationRequest(prompt="x", tools=TOOLS, tool_choice="none"), "engine")
    refuse_unenforced(constrained, "engine", constraint=True)
