"""The installed example plugin served end to end: OpenAI SDK, /v1/infer, KServe, a pipeline."""

from __future__ import annotations

import base64
import io
import json
import wave
from typing import Any

import numpy as np
import openai
import pytest

from localinfer.handlers.base import Handler
from localinfer.handlers.tasks import TRANSCRIPTION, TranscriptionRequest, TranscriptionResult
from localinfer.runtime.model import ModelDefinition
from localinfer.testing import catalog_definition, serve

pytestmark = pytest.mark.anyio


class FakeEars(Handler):
    """Stands in for Whisper: "hears" how long the audio is."""

    task = TRANSCRIPTION

    def run_batch(self, inputs: list[TranscriptionRequest]) -> list[TranscriptionResult]:
        return [
            TranscriptionResult(f"we heard {r.audio.size} samples", "en", r.audio.size / 16e3)
            for r in inputs
        ]


def pipeline_models() -> list[ModelDefinition]:
    return [
        ModelDefinition(name="ears", create_handler=lambda i, d: FakeEars(), task=TRANSCRIPTION),
        catalog_definition("example-parrot"),
        catalog_definition("example-transcript-summary", options={"transcriber": "ears"}),
    ]


def sdk(client: Any) -> openai.AsyncOpenAI:
    base = str(client.base_url).rstrip("/")
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


async def test_parrot_streams_through_the_openai_sdk() -> None:
    async with serve([catalog_definition("example-parrot")]) as client:
        api = sdk(client)
        stream = await api.chat.completions.create(
            model="example-parrot",
            messages=[{"role": "user", "content": "pieces of eight"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        deltas, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert deltas == ["Squawk!", " pieces", " of", " eight"]
        assert usage is not None and usage.completion_tokens == 4
        reply = await api.chat.completions.create(
            model="example-parrot",
            messages=[{"role": "user", "content": "one two three four"}],
            max_tokens=2,
        )
        assert reply.choices[0].message.content == "Squawk! one"
        assert reply.choices[0].finish_reason == "length"
        completion = await api.completions.create(
            model="example-parrot", prompt="polly wants STOP a cracker", stop=["STOP"]
        )
        assert completion.choices[0].text == "Squawk! polly wants "
        await api.close()


async def test_parrot_by_capability_and_over_kserve() -> None:
    async with serve([catalog_definition("example-parrot")]) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
            headers={"X-Cap-Family": "parrot"},
        )
        assert r.json()["choices"][0]["message"]["content"] == "Squawk! hello"
        r = await client.post(
            "/v2/models/example-parrot/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]},
        )
        assert r.json()["outputs"][0]["data"] == ["Squawk! hi"]


def wav(samples: int) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(np.zeros(samples, dtype="<i2").tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


async def test_pipeline_calls_two_models_in_process() -> None:
    async with serve(pipeline_models()) as client:
        url = "/v1/infer/example-transcript-summary"
        r = await client.post(url, json={"audio": wav(1600)})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "transcript": "we heard 1600 samples",
            "summary": "Squawk! we heard 1600 samples",
        }
        # streamed: the summary's deltas, as the summariser produces them
        r = await client.post(url, json={"samples": [0.0] * 8, "stream": True})
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "".join(json.loads(e) for e in events[:-1]) == "Squawk! we heard 8 samples"
        # and over KServe, named inputs
        r = await client.post(
            "/v2/models/example-transcript-summary/infer",
            json={
                "inputs": [
                    {"name": "samples", "datatype": "FP32", "shape": [3], "data": [0, 0.5, 0]},
                    {"name": "sample_rate", "datatype": "INT64", "shape": [1], "data": [16000]},
                ]
            },
        )
        outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
        assert outputs == {
            "transcript": ["we heard 3 samples"],
            "summary": ["Squawk! we heard 3 samples"],
        }
        r = await client.post(url, json={"audio": "not base64!"})
        assert r.status_code == 422
        assert r.json()["error"]["message"] == "audio is not valid base64"
