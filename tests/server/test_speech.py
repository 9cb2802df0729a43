"""``POST /v1/audio/speech`` and ``GET /v1/audio/voices`` on the packaged hibari voice.

A real round trip: the voice says a sentence, the packaged Whisper tiny.en (faster-whisper
plugin) hears it back. Every format is decoded by ffmpeg; bad input is a 400 and the
worker keeps serving; a client that leaves mid-stream frees the worker at once.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import ThreadedServer

pytestmark = pytest.mark.real_model

TTS, ASR = "hibari", "whisper-tiny.en"
SENTENCE = "The quick brown fox jumps over the lazy dog."
#: hundreds of sentences: many seconds of synthesis at a quarter of the normal pace
LONG = " ".join(f"This is sentence number {n} of a long reading." for n in range(80))[:4096]


def _installed(alias: str) -> bool:
    entry = discover().catalog.get(alias)
    return entry is not None and entry.packaged is not None and bool(packaged_path(entry.packaged))


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    if not _installed(TTS):
        pytest.skip("hibari-tts is not installed: run `bash scripts/install.sh`")
    aliases = [TTS, *([ASR] if _installed(ASR) else [])]
    with ThreadedServer([model_definition(resolve(a, discover())) for a in aliases]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def _say(client: openai.OpenAI, text: str, fmt: str = "wav") -> bytes:
    response = client.audio.speech.create(
        model=TTS,
        input=text,
        voice="heart",
        response_format=fmt,  # type: ignore[arg-type]
    )
    return response.content


def _seconds(data: bytes, fmt: str) -> float:
    """The duration ffmpeg decodes from ``data``."""
    source = ["-f", "s16le", "-ar", "24000", "-ac", "1"] if fmt == "pcm" else []
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", *source, "-i", "pipe:0", "-f", "s16le", "-ac", "1",
         "-ar", "16000", "pipe:1"],
        input=data, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return len(decoded) / 2 / 16_000


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_the_packaged_voice_says_a_sentence_that_whisper_hears_back(
    server: ThreadedServer, client: openai.OpenAI
) -> None:
    if not _installed(ASR):
        pytest.skip("Whisper tiny.en is not installed: run `bash scripts/install.sh`")
    audio = _say(client, SENTENCE)
    assert audio[:4] == b"RIFF"
    heard = client.audio.transcriptions.create(model=ASR, file=("speech.wav", audio))
    assert _words(heard.text) == _words(SENTENCE)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format_decodes_to_the_same_length(client: openai.OpenAI, fmt: str) -> None:
    reference = _seconds(_say(client, SENTENCE, "wav"), "wav")
    assert 1.5 < reference < 6
    seconds = _seconds(_say(client, SENTENCE, fmt), fmt)
    # encoders pad a frame or two (aac, opus) at the ends
    assert seconds == pytest.approx(reference, abs=0.15)


def test_sse_carries_the_audio_base64_then_done(server: ThreadedServer) -> None:
    body = {"model": TTS, "input": "One. Two.", "response_format": "wav", "stream_format": "sse"}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert audio[:4] == b"RIFF"
    seconds = (len(audio) - 44) / 2 / 24_000
    assert events[-1]["usage"]["audio_seconds"] == pytest.approx(seconds, abs=0.01)


def test_voices_are_listed(server: ThreadedServer) -> None:
    listed = httpx.get(f"{server.url}/v1/audio/voices").json()
    assert {"id": "heart", "model": TTS}.items() <= listed["data"][0].items()
    assert httpx.get(f"{server.url}/v1/audio/voices", params={"model": TTS}).json() == listed
    r = httpx.get(f"{server.url}/v1/audio/voices", params={"mdoel": TTS})
    assert r.status_code == 400 and r.json()["error"]["param"] == "mdoel"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "x" * 1_000_000}, "input"),
        ({"voice": "nobody"}, "voice"),
        ({"speed": 0}, "speed"),
        ({"speed": 100}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"stream_format": "chunks"}, "stream_format"),
        ({"instructions": "whisper it"}, "instructions"),
    ],
)
def test_bad_input_is_a_400_and_the_worker_keeps_serving(
    server: ThreadedServer, change: dict[str, object], param: str
) -> None:
    body = {"model": TTS, "input": "Hello.", "voice": "heart", **change}
    r = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    ok = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={"model": TTS, "input": "Still here.", "response_format": "pcm"},
        timeout=30,
    )
    assert ok.status_code == 200 and len(ok.content) > 10_000


def _busy(server: ThreadedServer) -> int:
    stats = httpx.get(f"{server.url}/v1/stats").json()["models"][TTS]
    return int(stats["in_flight"]) + int(stats["busy_workers"])


def test_first_bytes_leave_early_and_a_client_that_leaves_frees_the_worker(
    server: ThreadedServer,
) -> None:
    body = {"model": TTS, "input": LONG, "response_format": "pcm", "speed": 0.25}
    started = time.perf_counter()
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as r:
        first = next(r.iter_bytes())
        first_after = time.perf_counter() - started
        assert first
    # the whole reading is minutes of audio: its first sentence came long before the end
    assert first_after < 2.0
    left = time.perf_counter()
    while _busy(server) and time.perf_counter() - left < 5:
        time.sleep(0.05)
    assert _busy(server) == 0
    ok = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={"model": TTS, "input": "Free again.", "response_format": "pcm"},
        timeout=30,
    )
    assert ok.status_code == 200
    assert time.perf_counter() - left < 5  # not after the abandoned reading ran its course


# -- streamed transcription ------------------------------------------------------------------

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins "
    "with a single step. All that glitters is not gold."
)


def test_a_streamed_transcription_sends_deltas_then_the_whole_text(
    client: openai.OpenAI,
) -> None:
    if not _installed(ASR):
        pytest.skip("Whisper tiny.en is not installed: run `bash scripts/install.sh`")
    audio = _say(client, PARAGRAPH)
    whole = client.audio.transcriptions.create(model=ASR, file=("speech.wav", audio))
    stream = client.audio.transcriptions.create(model=ASR, file=("speech.wav", audio), stream=True)
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2  # a segment at a time
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == "".join(deltas) == whole.text
    assert _words(whole.text)[:4] == ["the", "quick", "brown", "fox"]


def test_a_streamed_transcription_refuses_subtitle_formats(server: ThreadedServer) -> None:
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        data={"model": ASR, "stream": "true", "response_format": "srt"},
        files={"file": ("a.wav", b"RIFF")},
    )
    assert r.status_code == 400 and "stream" in r.json()["error"]["message"]
