"""The clients' shared core: SSE decoding, chat chunks, embeddings, audio, downloads."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from localinfer import errors as e
from localinfer.client import _core as core
from localinfer.client.audio import audio_upload, wav_bytes
from localinfer.client.messages import chat_messages, content_text
from localinfer.client.results import ModelInfo, ModelList


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> str:
    delta = {} if content is None else {"content": content}
    body = {"id": "c1", "model": "m", "choices": [{"delta": delta, "finish_reason": finish}]}
    return "data: " + json.dumps({**body, **extra})


def test_sse_decoder_joins_data_lines_and_ignores_the_rest() -> None:
    decoder = core.SSEDecoder()
    lines = [": comment", "event: x", "data: a", "data:b", "", "", "data: [DONE]", ""]
    assert [d for line in lines if (d := decoder.feed(line)) is not None] == ["a\nb", "[DONE]"]


def test_chat_chunks_become_deltas_then_a_result() -> None:
    accumulator = core.ChatAccumulator("m", started=0.0)
    performance = {"queue_ms": 1, "prefill_ms": 2, "decode_ms": 3, "tokens_per_second": 4}
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    lines = [
        chunk(""),
        chunk("Hel"),
        chunk("lo"),
        chunk(None, "stop", performance=performance),
        "data: " + json.dumps({"id": "c1", "model": "m", "choices": [], "usage": usage}),
        "data: [DONE]",
    ]
    deltas = [d for line in lines for d in (accumulator.feed_line(line), accumulator.feed_line(""))]
    assert [d for d in deltas if d] == ["Hel", "lo"]
    assert accumulator.done
    result = accumulator.result()
    assert (result.text, result.finish_reason, result.id) == ("Hello", "stop", "c1")
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (5, 7)
    assert result.timing.prefill_ms == 2 and result.timing.tokens_per_second == 4
    assert result.timing.first_token_ms is not None and result.timing.total_ms > 0


def test_an_error_event_mid_stream_is_raised_as_its_class() -> None:
    accumulator = core.ChatAccumulator("m", started=0.0)
    error = {"error": {"message": "gone", "type": "x", "param": None, "code": "slow_consumer"}}
    accumulator.feed_line("data: " + json.dumps(error))
    with pytest.raises(e.SlowConsumer, match="gone"):
        accumulator.feed_line("")


def test_embeddings_from_base64_and_float_lists_in_index_order() -> None:
    vectors = np.array([[1, 0, 0], [0, 0.6, 0.8]], dtype=np.float32)
    data = [
        {"index": 1, "embedding": vectors[1].tolist()},
        {"index": 0, "embedding": base64.b64encode(vectors[0].tobytes()).decode()},
    ]
    body = {"data": data, "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    result = core.embeddings_result(body, ["a", "b"])
    assert result.shape == (2, 3) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.asarray(result), vectors)
    ((closest, score),) = result.similarity().most_similar("a", k=1)
    assert closest == "a" and score == pytest.approx(1.0)


def test_samples_are_uploaded_as_16_bit_wav() -> None:
    samples = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    name, content, media = audio_upload(samples, 8000)
    assert (name, media) == ("audio.wav", "audio/wav")
    with wave.open(io.BytesIO(content)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        decoded = np.frombuffer(wav.readframes(wav.getnframes()), "<i2") / 32767
    np.testing.assert_allclose(decoded, samples, atol=1e-4)
    stereo = np.stack([samples, samples])  # (channels, n)
    with wave.open(io.BytesIO(wav_bytes(stereo, 8000))) as wav:
        assert wav.getnchannels() == 2 and wav.getnframes() == 8000
    with pytest.raises(ValueError, match="shaped"):
        wav_bytes(np.zeros((2, 2, 2)), 8000)


def test_paths_and_bytes_are_uploaded_as_they_are(tmp_path: Path) -> None:
    assert audio_upload(b"RIFF...") == ("audio", b"RIFF...", "application/octet-stream")
    (tmp_path / "clip.flac").write_bytes(b"fLaC")
    assert audio_upload(tmp_path / "clip.flac")[:2] == ("clip.flac", b"fLaC")


def test_messages_from_a_prompt_or_a_list() -> None:
    assert chat_messages("hi", system="be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    with pytest.raises(e.InvalidRequest, match="role"):
        chat_messages([{"content": "no role"}])
    assert content_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "ab"
    with pytest.raises(e.InvalidRequest):
        content_text([{"type": "image_url", "image_url": {"url": "x"}}])


def test_default_model_is_the_only_one_of_its_task() -> None:
    models = ModelList(
        (ModelInfo("a", "chat"), ModelInfo("b", "embeddings"), ModelInfo("c", "embeddings"))
    )
    assert core.pick_model(models, "chat", None) == "a"
    assert core.pick_model(models, "embeddings", None) is None
    assert core.pick_model(models, "embeddings", "c") == "c"
    assert "several serve embeddings: b, c" in str(core.no_default_model(models, "embeddings"))
    assert "b" in models and models.get("b") == ModelInfo("b", "embeddings")


def test_download_states_are_read_leniently() -> None:
    progress = {"done_bytes": 50, "total_bytes": 200, "fraction": 0.25}
    snapshot = {"id": "d1", "model": "org/m", "state": "running", "progress": progress}
    download = core.download_from(snapshot)
    assert (download.model, download.fraction) == ("org/m", 0.25)
    assert not core.download_finished(download) and not core.download_failed(download)
    assert core.download_finished(core.download_from({"status": "Completed"}))
    failed = core.download_from(
        {"model": "m", "state": "failed", "error": {"message": "403", "code": "offline"}}
    )
    assert core.download_failed(failed) and failed.error == "403"
    error = core.download_error(failed)
    assert error.code == "offline" and "downloading 'm' failed: 403" in str(error)
    assert core.download_error(core.download_from({"state": "cancelled"})).code == (
        "download_cancelled"
    )
