"""The whole chat API through the official ``openai`` SDK, on a tiny random Llama.

Random weights make these strong tests of enforcement: left alone the model writes noise,
so every valid JSON document and every valid tool call below is the grammar's doing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.support import CHAT, ThreadedServer, define_local


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path) -> Iterator[ThreadedServer]:
    # tool instructions are longer than the tiny model's 512 positions; RoPE goes further
    with ThreadedServer([define_local(tiny_llama_dir, CHAT, context_length=4096)]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


ASK: Any = [{"role": "user", "content": "Describe a city."}]

#: every field bounded, so even a random model finishes the document within the budget
CITY = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "sunny": {"type": "boolean"},
        "population": {"type": "integer", "minimum": 0, "maximum": 999},
        "kind": {"enum": ["town", "city", "village"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
    },
    "required": ["name", "sunny", "population", "kind", "tags"],
    "additionalProperties": False,
}

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 10},
                    "unit": {"enum": ["c", "f"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "minimum": 0, "maximum": 99},
                    "b": {"type": "integer", "minimum": 0, "maximum": 99},
                },
                "required": ["a", "b"],
            },
        },
    },
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}


def _json_schema(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_output_validates(client: openai.OpenAI, temperature: float) -> None:
    reply = client.chat.completions.create(
        model=CHAT,
        messages=ASK,
        response_format=_json_schema(CITY),
        max_tokens=120,
        temperature=temperature,
        seed=7,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content or ""), CITY)


def test_json_schema_streamed_is_the_same_document(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(
        model=CHAT, messages=ASK, response_format=_json_schema(CITY), max_tokens=120, temperature=0
    )
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(stream=True, **kwargs)
        if c.choices
    )
    assert streamed == whole
    jsonschema.validate(json.loads(streamed), CITY)


def test_json_object_is_an_object(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT,
        messages=ASK,
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    choice = reply.choices[0]
    if choice.finish_reason == "stop":  # a free-form object may run past the budget
        assert isinstance(json.loads(choice.message.content or ""), dict)
    else:
        assert (choice.message.content or "").startswith("{")


class City(BaseModel):
    name: str = Field(max_length=8)
    kind: Literal["town", "city", "village"]
    sunny: bool


def test_sdk_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(
        model=CHAT,
        messages=ASK,
        response_format=City,
        max_tokens=60,
        temperature=0,
    )
    assert isinstance(reply.choices[0].message.parsed, City)


def _check_call(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.parametrize("choice", ["required", "add"])
def test_enforced_tool_call(client: openai.OpenAI, choice: str) -> None:
    tool_choice: Any = (
        choice if choice == "required" else {"type": "function", "function": {"name": choice}}
    )
    reply = client.chat.completions.create(
        model=CHAT,
        messages=ASK,
        tools=TOOLS,
        tool_choice=tool_choice,
        parallel_tool_calls=False,
        max_tokens=200,  # the tiny vocabulary spells most words letter by letter
        temperature=1.0,
        seed=3,
    )
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    if choice != "required":
        assert call.function.name == choice
    _check_call(call.function.name, call.function.arguments)


def test_streamed_tool_call_deltas(client: openai.OpenAI) -> None:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model=CHAT,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=200,  # the tiny vocabulary spells most words letter by letter
        temperature=0,
        stream=True,
    ):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            assert delta.function is not None
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    _check_call(calls[0]["name"], calls[0]["arguments"])


def test_tool_history_round_trips(client: openai.OpenAI) -> None:
    history: list[Any] = [
        {"role": "user", "content": "What is 2 + 3?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]
    reply = client.chat.completions.create(
        model=CHAT, messages=history, tools=TOOLS, tool_choice="none", max_tokens=8
    )
    assert reply.choices[0].message.tool_calls is None


def test_chat_logprobs_stream_and_not(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(
        model=CHAT, messages=ASK, max_tokens=10, temperature=0, logprobs=True, top_logprobs=3
    )
    reply = client.chat.completions.create(**kwargs)
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    # a token holding part of a UTF-8 character reads as U+FFFD on its own
    joined = "".join(e.token for e in entries).replace("\ufffd", "")
    assert joined == (choice.message.content or "").replace("\ufffd", "")
    for entry in entries:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob <= 0
        # greedy: the chosen token is the most likely one
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob, abs=1e-5)
    streamed = []
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed.extend(chunk.choices[0].logprobs.content)
    assert [e.token for e in streamed] == [e.token for e in entries]


def test_completion_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=CHAT, prompt="The sea is", max_tokens=6, temperature=0, logprobs=2
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.top_logprobs
    joined = "".join(logprobs.tokens).replace("\ufffd", "")
    assert joined == reply.choices[0].text.replace("\ufffd", "")
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)


def test_n_choices_stream_and_not(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(model=CHAT, messages=ASK, max_tokens=6, temperature=1.0, n=3)
    reply = client.chat.completions.create(**kwargs)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3 * 6 or reply.usage.completion_tokens <= 18
    texts: dict[int, str] = {}
    finished: set[int] = set()
    usage = None
    for chunk in client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **kwargs
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
        usage = chunk.usage or usage
    assert finished == {0, 1, 2}
    assert usage is not None and usage.completion_tokens >= 3


def test_schema_limits_are_400s(client: openai.OpenAI) -> None:
    big = {
        "type": "object",
        "properties": {f"field_{i}": {"type": "string"} for i in range(3000)},
    }
    with pytest.raises(openai.BadRequestError, match="MAX_SCHEMA"):
        client.chat.completions.create(
            model=CHAT,
            messages=ASK,
            response_format=_json_schema(big),
        )


# -- faces: Client, SyncClient and Engine --------------------------------------------------------


class Add(BaseModel):
    """Add two small numbers."""

    a: int = Field(ge=0, le=9)
    b: int = Field(ge=0, le=9)


def test_sync_client_parses_into_the_model_and_types_tool_calls(server: ThreadedServer) -> None:
    from localinfer.client import SyncClient

    with SyncClient(server.url) as client:
        city = client.chat("Describe a city.", model=CHAT, response_format=City, max_tokens=60)
        assert isinstance(city, City)
        result = client.chat(
            "What is 2 + 3?",
            model=CHAT,
            tools=[Add],
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=200,
            temperature=0,
        )
        (call,) = result.tool_calls
        assert call.name == "Add" and isinstance(call.parse(Add), Add)
        assert result.assistant_message()["tool_calls"][0]["function"]["name"] == "Add"


@pytest.mark.anyio
async def test_async_client_parses_and_streams_tool_calls(server: ThreadedServer) -> None:
    from localinfer.client import Client

    async with Client(server.url) as client:
        city = await client.chat(
            "Describe a city.", model=CHAT, response_format=City, max_tokens=60
        )
        assert isinstance(city, City)
        stream = client.chat(
            "What is 2 + 3?",
            model=CHAT,
            tools=[Add],
            tool_choice="Add",
            max_tokens=200,
            temperature=0,
            stream=True,
        )
        assert [d async for d in stream] == []  # a call, no content
        assert stream.result is not None
        (call,) = stream.result.tool_calls
        assert isinstance(call.parse(Add), Add)


@pytest.mark.anyio
async def test_engine_parses_into_the_model(tiny_llama_dir: Path) -> None:
    import localinfer

    served = {"tiny": define_local(tiny_llama_dir, "tiny", context_length=4096)}
    async with localinfer.Engine(served, device="cpu") as engine:
        city = await engine.chat(
            "Describe a city.", model="tiny", response_format=City, max_tokens=60
        )
        assert isinstance(city, City)
        result = await engine.chat(
            "Hi", model="tiny", tools=[Add], tool_choice="Add", max_tokens=400, temperature=0
        )
        assert result.finish_reason == "tool_calls"
        assert isinstance(result.tool_calls[0].parse(Add), Add)


def test_n_as_an_integral_float_is_an_integer(server: ThreadedServer) -> None:
    """``1.0`` is an integer in JSON Schema, so in the published schema: 200, not 400."""
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "n": 2.0}, timeout=60)
    assert r.status_code == 200 and len(r.json()["choices"]) == 2
    r = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "n": 1.5}, timeout=60)
    assert r.status_code == 400
