"""The most used client libraries, unchanged, against localinfer.

``langchain-openai``'s ``ChatOpenAI`` (``with_structured_output``, ``bind_tools``) and
``instructor`` talk to a local base URL exactly as they talk to OpenAI, here to a tiny
random Llama: with random weights, every parsed object exists because localinfer enforced
the schema. A ``pydantic-ai`` agent runs a whole tool loop, which needs a model that
reads the tool's result: the packaged SmolLM2-135M (served by llama.cpp, as by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import CHAT, ThreadedServer, define_local

SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer([define_local(tiny_llama_dir, CHAT, context_length=4096)]) as running:
        yield running


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(max_length=8)
    unit: Literal["c", "f"]


class Add(BaseModel):
    """Add two small numbers."""

    a: int = Field(ge=0, le=9)
    b: int = Field(ge=0, le=9)


def test_langchain_structured_output_and_bound_tools(server: ThreadedServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model=CHAT,
        base_url=f"{server.url}/v1",
        api_key="unused",
        temperature=0,
        max_tokens=200,
        max_retries=0,
    )
    weather = llm.with_structured_output(Weather, method="json_schema").invoke("Paris?")
    assert isinstance(weather, Weather)
    message = llm.bind_tools([Add], tool_choice="Add").invoke("What is 2 + 3?")
    (call,) = message.tool_calls
    assert call["name"] == "Add"
    Add.model_validate(call["args"])


def test_instructor_tools_and_json_schema_modes(server: ThreadedServer) -> None:
    instructor = pytest.importorskip("instructor")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    for mode in (instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA):
        patched = instructor.from_openai(client, mode=mode)
        weather = patched.chat.completions.create(
            model=CHAT,
            response_model=Weather,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            max_tokens=200,
            temperature=0,
            max_retries=0,
        )
        assert isinstance(weather, Weather)


class Forecast(BaseModel):
    """The weather forecast for a city."""

    city: str
    temperature_c: int


@pytest.fixture(scope="module")
def smollm2_server() -> Iterator[ThreadedServer]:
    entry = discover().catalog.get(SMOLLM2)
    if entry is None or not entry.packaged or not packaged_path(entry.packaged):
        pytest.skip(f"{SMOLLM2} is not installed: run `bash scripts/install.sh`")
    with ThreadedServer([model_definition(resolve(SMOLLM2, discover()))]) as running:
        yield running


@pytest.mark.real_model
def test_pydantic_ai_agent_calls_a_tool_and_returns_the_output_type(
    smollm2_server: ThreadedServer,
) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent, RunContext, Tool
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.tools import ToolDefinition
    from pydantic_ai.usage import UsageLimits

    asked: list[str] = []

    def get_temperature(city: str) -> int:
        """Get the current temperature in a city, in degrees Celsius."""
        asked.append(city)
        return 21

    async def until_called(ctx: RunContext[None], tool: ToolDefinition) -> ToolDefinition | None:
        # a 135M model asks again forever; offered once, the next step must be the output
        return None if asked else tool

    model = OpenAIChatModel(
        SMOLLM2,
        provider=OpenAIProvider(base_url=f"{smollm2_server.url}/v1", api_key="unused"),
    )
    agent = Agent(
        model,
        output_type=Forecast,
        tools=[Tool(get_temperature, prepare=until_called)],
        model_settings={"temperature": 0, "max_tokens": 100, "parallel_tool_calls": False},
    )
    result = agent.run_sync(
        "What is the temperature in Paris?", usage_limits=UsageLimits(request_limit=4)
    )
    # pydantic-ai validated the output tool's arguments into the model: localinfer's
    # required tool_choice guaranteed the shape, the tool's answer supplied the value
    assert isinstance(result.output, Forecast)
    assert asked == ["Paris"]
    assert result.output == Forecast(city="Paris", temperature_c=21)
