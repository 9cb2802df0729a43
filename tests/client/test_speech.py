"""Speech on every face: ``SyncClient`` and ``Client`` over HTTP, ``Engine`` in process.

The packaged hibari voice speaks; the packaged Whisper tiny.en hears it back, whole or
streamed. The same calls give the same kinds of results on each face.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest

import localinfer
from localinfer.client.results import Speech
from localinfer.errors import InvalidRequest
from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import ThreadedServer

pytestmark = pytest.mark.real_model

TTS, ASR = "hibari", "whisper-tiny.en"
TEXT = "The quick brown fox jumps over the lazy dog. All that glitters is not gold."


def _installed(alias: str) -> bool:
    entry = discover().catalog.get(alias)
    return entry is not None and entry.packaged is not None and bool(packaged_path(entry.packaged))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    if not (_installed(TTS) and _installed(ASR)):
        pytest.skip("hibari-tts or Whisper tiny.en is not installed: run scripts/install.sh")
    definitions = [model_definition(resolve(alias, discover())) for alias in (TTS, ASR)]
    with ThreadedServer(definitions) as running:
        yield running


def test_sync_client_speaks_and_hears(server: ThreadedServer) -> None:
    with localinfer.SyncClient(server.url) as client:
        speech = client.speech(TEXT)  # the only speech model: no name needed
        assert isinstance(speech, Speech) and isinstance(speech, bytes)
        assert speech[:4] == b"RIFF" and speech.format == "wav"
        assert '<audio controls src="data:audio/wav;base64,' in speech._repr_html_()
        chunks = list(client.speech(TEXT, response_format="mp3", stream=True))
        assert len(chunks) > 1 and b"".join(chunks)[:3] in (b"ID3", b"\xff\xf3", b"\xff\xfb")
        deltas = list(client.transcribe(bytes(speech), stream=True))
        whole = client.transcribe(bytes(speech))
        assert "".join(deltas) == whole.text
        assert _words(whole.text) == _words(TEXT)


@pytest.mark.anyio
async def test_async_client_speaks_and_hears(server: ThreadedServer) -> None:
    async with localinfer.Client(server.url) as client:
        speech = await client.speech(TEXT, voice="heart", speed=1.0)
        assert speech.format == "wav" and len(speech) > 50_000
        stream = client.speech(TEXT, response_format="pcm", stream=True)
        assert isinstance(stream, AsyncIterator)
        pcm = b"".join([chunk async for chunk in stream])
        assert abs(len(pcm) - (len(speech) - 44)) < 24_000 * 2 * 0.05  # same length, ±50 ms
        async with client.transcribe(bytes(speech), stream=True) as deltas:
            text = await deltas.collect()
        assert _words(text) == _words(TEXT)
        with pytest.raises(InvalidRequest, match="voice"):
            await client.speech(TEXT, voice="nobody")


@pytest.mark.anyio
async def test_engine_speaks_and_hears_in_process() -> None:
    if not (_installed(TTS) and _installed(ASR)):
        pytest.skip("hibari-tts or Whisper tiny.en is not installed: run scripts/install.sh")
    async with localinfer.Engine([TTS, ASR], device="cpu") as engine:
        speech = await engine.speech(TEXT)
        assert isinstance(speech, Speech) and speech[:4] == b"RIFF"
        ogg = b"".join([c async for c in engine.speech(TEXT, response_format="opus", stream=True)])
        assert ogg[:4] == b"OggS"
        stream = engine.transcribe(bytes(speech), stream=True)
        deltas = [delta async for delta in stream]
        whole = await engine.transcribe(bytes(speech))
        assert "".join(deltas) == whole.text and len(deltas) >= 2
        assert _words(whole.text) == _words(TEXT)
        with pytest.raises(InvalidRequest, match="response_format"):
            engine.speech(TEXT, response_format="ogg")
