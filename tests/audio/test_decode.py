from __future__ import annotations

import io
import shutil
import subprocess
import wave
from functools import partial
from pathlib import Path

import anyio
import numpy as np
import pytest

from localinfer.audio import SAMPLE_RATE, decode_audio, decode_audio_async, resample
from localinfer.errors import InvalidRequest, RequestTooLarge

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pcm_wav(samples: np.ndarray, rate: int, width: int = 2) -> bytes:
    """``samples`` (frames x channels, or mono) as integer PCM WAV bytes."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    scaled = np.clip(frames, -1.0, 1.0 - 2.0**-23)
    if width == 1:
        raw = (np.round(scaled * 127) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(scaled * 32767).astype("<i2").tobytes()
    elif width == 3:
        ints = np.round(scaled * (2**23 - 1)).astype("<i4")
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raw = np.round(scaled.astype(np.float64) * (2**31 - 1)).astype("<i4").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(frames.shape[1])
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(raw)
    return buffer.getvalue()


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def encode_with_ffmpeg(wav: bytes, suffix: str, tmp_path: Path) -> bytes:
    source = tmp_path / "source.wav"
    source.write_bytes(wav)
    target = tmp_path / f"clip{suffix}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), str(target)],
        check=True,
    )
    return target.read_bytes()


@pytest.mark.parametrize(("width", "tolerance"), [(1, 1 / 100), (2, 1e-4), (3, 1e-6), (4, 1e-6)])
def test_pcm_wav_widths_decode_to_the_same_signal(width: int, tolerance: float) -> None:
    signal = sine(440, 0.5, SAMPLE_RATE)
    decoded = decode_audio(pcm_wav(signal, SAMPLE_RATE, width), max_seconds=10)
    assert decoded.dtype == np.float32
    assert decoded.shape == signal.shape
    np.testing.assert_allclose(decoded, signal, atol=tolerance)


def test_stereo_is_mixed_down_to_mono() -> None:
    left = sine(440, 0.25, SAMPLE_RATE, 0.6)
    right = np.full_like(left, 0.2)
    decoded = decode_audio(pcm_wav(np.stack([left, right], axis=1), SAMPLE_RATE), max_seconds=10)
    assert decoded.ndim == 1
    np.testing.assert_allclose(decoded, (left + right) / 2, atol=1e-4)


def test_44k1_is_resampled_to_16k_and_keeps_its_frequency() -> None:
    decoded = decode_audio(pcm_wav(sine(1000, 2.0, 44_100), 44_100), max_seconds=10)
    assert decoded.size == 32_000
    assert dominant_frequency(decoded) == pytest.approx(1000, abs=2)
    assert np.max(np.abs(decoded[500:-500])) == pytest.approx(0.5, abs=0.01)


def test_resampling_removes_what_the_new_rate_cannot_hold() -> None:
    # 10 kHz is above the 8 kHz Nyquist frequency of 16 kHz audio: it must not alias to 6 kHz
    out = resample(sine(10_000, 1.0, 44_100), 44_100, 16_000)
    assert np.max(np.abs(out[500:-500])) < 1e-3


@pytest.mark.parametrize("rate", [8_000, 22_050, 24_000, 48_000])
def test_resampling_matches_the_ideal_signal(rate: int) -> None:
    out = resample(sine(440, 1.0, rate), rate, 16_000)
    assert out.size == 16_000
    np.testing.assert_allclose(out[300:-300], sine(440, 1.0, 16_000)[300:-300], atol=1e-3)


def test_streaming_wav_with_unknown_length_decodes() -> None:
    data = bytearray(pcm_wav(sine(440, 0.5, SAMPLE_RATE), SAMPLE_RATE))
    data[40:44] = (0xFFFFFFFF).to_bytes(
        4, "little"
    )  # the data chunk size, as a live writer leaves it
    assert decode_audio(bytes(data), max_seconds=10).size == 8_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage" * 50, r"unrecognised|cannot decode"),
        (pcm_wav(sine(440, 1.0, SAMPLE_RATE), SAMPLE_RATE)[:20_000], "truncated"),
        (pcm_wav(sine(440, 1.0, SAMPLE_RATE), SAMPLE_RATE)[:30], None),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40, None),
    ],
    ids=["empty", "garbage", "truncated-data", "truncated-header", "corrupt-header"],
)
def test_bad_audio_is_an_invalid_request(
    data: bytes, message: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same verdict with and without ffmpeg on the machine
    for which in (shutil.which, lambda name: None):
        monkeypatch.setattr(shutil, "which", which)
        with pytest.raises(InvalidRequest, match=message) as info:
            decode_audio(data, max_seconds=10)
        assert not isinstance(info.value, RequestTooLarge)


def test_too_long_wav_is_refused_from_its_header() -> None:
    with pytest.raises(RequestTooLarge, match="at most 2 s"):
        decode_audio(pcm_wav(sine(440, 3.0, SAMPLE_RATE), SAMPLE_RATE), max_seconds=2)
    assert decode_audio(pcm_wav(sine(440, 2.0, SAMPLE_RATE), SAMPLE_RATE), max_seconds=2).size


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".ogg", ".m4a"])
def test_compressed_formats_decode_through_ffmpeg(suffix: str, tmp_path: Path) -> None:
    encoded = encode_with_ffmpeg(pcm_wav(sine(440, 2.0, 22_050), 22_050), suffix, tmp_path)
    for backend in ("ffmpeg", "auto"):
        decoded = decode_audio(encoded, max_seconds=10, backend=backend)  # type: ignore[arg-type]
        assert decoded.dtype == np.float32
        assert decoded.size == pytest.approx(32_000, abs=2_500)  # codec padding
        assert dominant_frequency(decoded) == pytest.approx(440, abs=3)
    with pytest.raises(RequestTooLarge):
        decode_audio(encoded, max_seconds=1.5, backend="ffmpeg")


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".ogg"])
def test_soundfile_decodes_without_ffmpeg(suffix: str, tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    encoded = encode_with_ffmpeg(pcm_wav(sine(440, 2.0, 22_050), 22_050), suffix, tmp_path)
    decoded = decode_audio(encoded, max_seconds=10, backend="python")
    assert decoded.size == pytest.approx(32_000, abs=2_500)
    assert dominant_frequency(decoded) == pytest.approx(440, abs=3)
    with pytest.raises(RequestTooLarge):
        decode_audio(encoded, max_seconds=1.5, backend="python")


@needs_ffmpeg
def test_corrupt_compressed_audio_is_an_invalid_request(tmp_path: Path) -> None:
    flac = encode_with_ffmpeg(pcm_wav(sine(440, 1.0, SAMPLE_RATE), SAMPLE_RATE), ".flac", tmp_path)
    corrupt = flac[:8] + bytes(range(256)) * 8
    with pytest.raises(InvalidRequest, match="cannot decode"):
        decode_audio(corrupt, max_seconds=10)
    with pytest.raises(InvalidRequest, match=r"no audio stream|cannot decode"):
        decode_audio(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, max_seconds=10)


def test_without_any_decoder_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InvalidRequest, match="install ffmpeg"):
        decode_audio(b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 64, max_seconds=10)


@pytest.mark.parametrize("event_loop", ["asyncio", "trio"])
def test_async_decoding_matches_sync(event_loop: str, tmp_path: Path) -> None:
    if event_loop == "trio":
        pytest.importorskip("trio")
    wav = pcm_wav(sine(440, 1.0, 44_100), 44_100)
    files = [wav]
    if shutil.which("ffmpeg"):
        files.append(encode_with_ffmpeg(wav, ".m4a", tmp_path))  # through a temporary file
        files.append(encode_with_ffmpeg(wav, ".opus", tmp_path))  # through the pipe

    async def main() -> None:
        for data in files:
            got = await decode_audio_async(data, max_seconds=10)
            np.testing.assert_array_equal(got, decode_audio(data, max_seconds=10))
        with pytest.raises(RequestTooLarge):
            await decode_audio_async(wav, max_seconds=0.5)
        with pytest.raises(InvalidRequest):
            await decode_audio_async(wav[:1000], max_seconds=10)
        async with anyio.create_task_group() as tg:  # several at once share the limiter
            for _ in range(4):
                tg.start_soon(partial(decode_audio_async, wav, max_seconds=10))

    anyio.run(main, backend=event_loop)


@pytest.mark.parametrize(("orig", "new"), [(24_000, 16_000), (48_000, 16_000), (16_000, 24_000)])
def test_few_phases_by_strided_views_equal_the_gathered_windows(orig: int, new: int) -> None:
    from localinfer.audio import samples

    noise = np.random.default_rng(0).standard_normal(orig // 3 + 7).astype(np.float32)
    fast = samples.resample(noise, orig, new)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(samples, "_FEW_PHASES", 0)  # every rate through the gathered windows
        gathered = samples.resample(noise, orig, new)
    assert fast.shape == gathered.shape
    np.testing.assert_allclose(fast, gathered, atol=1e-5)
