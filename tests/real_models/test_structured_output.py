"""Structured output and enforced tool calls on the packaged SmolLM2-135M, via the ``openai`` SDK.

A real (if small) model: the schema guarantees the shape, the model supplies the fact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import ThreadedServer

pytestmark = pytest.mark.real_model

CHAT = "smollm2-135m-instruct"
FACT = {
    "type": "object",
    "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
    "required": ["country", "capital"],
    "additionalProperties": False,
}
ASK_FACT: Any = [
    {
        "role": "user",
        "content": "What is the capital of France? "
        "Answer in JSON with the country and its capital.",
    }
]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK_WEATHER: Any = [{"role": "user", "content": "What is the weather like in Paris?"}]


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    entry = discover().catalog.get(CHAT)
    if entry is None or not entry.packaged or not packaged_path(entry.packaged):
        pytest.skip(f"{CHAT} is not installed: run `bash scripts/install.sh`")
    with (
        ThreadedServer([model_definition(resolve(CHAT, discover()))]) as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c,
    ):
        yield c


def test_json_schema_returns_the_fact_in_shape(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(
        model=CHAT,
        messages=ASK_FACT,
        response_format={"type": "json_schema", "json_schema": {"name": "fact", "schema": FACT}},
        temperature=0,
        max_tokens=40,
    )
    reply = client.chat.completions.create(**kwargs)
    fact = json.loads(reply.choices[0].message.content or "")
    assert set(fact) == {"country", "capital"} and fact["capital"] == "Paris"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(stream=True, **kwargs)
        if c.choices
    )
    assert json.loads(streamed) == fact


def test_required_tool_choice_returns_a_valid_call(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(
        model=CHAT,
        messages=ASK_WEATHER,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=40,
    )
    reply = client.chat.completions.create(**kwargs)
    assert reply.choices[0].finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    names, arguments, finish = "", "", None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0 and delta.function is not None
            names += delta.function.name or ""
            arguments += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and names == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
