"""The built-in transformers Whisper handler on real weights: tiny.en rebuilt from CTranslate2.

The handler's own tests use a random model, which proves the plumbing but not that the
words come out right; this one checks the words, and that word timings land on them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localinfer.audio import decode_audio
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import TranscriptionRequest
from localinfer.handlers.transformers_whisper import WhisperHandler

pytestmark = pytest.mark.real_model


def test_transcribes_speech_with_word_timings(
    whisper_tiny_en_hf_dir: Path, speech_wav: Path
) -> None:
    handler = WhisperHandler(ModelSource(str(whisper_tiny_en_hf_dir)))
    handler.load("cpu")
    audio = decode_audio(speech_wav.read_bytes(), max_seconds=60)
    (result,) = handler.run_batch([TranscriptionRequest(audio=audio, word_timestamps=True)])
    text = result.text.lower()
    assert all(word in text for word in ("quick", "over", "lazy", "dog")), result.text
    assert result.language == "en" and not handler.multilingual
    assert result.words is not None
    words = {w.word.lower().strip(".,"): w for w in result.words}
    assert {"quick", "lazy", "dog"} <= set(words)
    assert words["quick"].start < words["lazy"].start <= words["dog"].start
    assert all(0 <= w.start <= w.end <= result.duration for w in result.words)


def test_a_streamed_transcription_ends_with_the_same_text(
    whisper_tiny_en_hf_dir: Path, speech_wav: Path
) -> None:
    from localinfer.testing import RecordingItem

    handler = WhisperHandler(ModelSource(str(whisper_tiny_en_hf_dir)))
    handler.load("cpu")
    audio = decode_audio(speech_wav.read_bytes(), max_seconds=60)
    item = RecordingItem(TranscriptionRequest(audio=audio, stream=True))
    handler.process([item])
    (whole,) = handler.run_batch([TranscriptionRequest(audio=audio)])
    assert item.error is None and item.chunks
    assert "".join(segment.text for segment in item.chunks) == item.result.text == whole.text
