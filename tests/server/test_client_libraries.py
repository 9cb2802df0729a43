"""The most used client libraries, unchanged, against localinfer (a tiny random Llama).

``langchain-openai``'s ``ChatOpenAI`` (``with_structured_output``, ``bind_tools``) and
``instructor`` talk to a local base URL exactly as they talk to OpenAI. With random
weights, every parsed object below exists because localinfer enforced the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from tests.support import CHAT, ThreadedServer, define_local


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
