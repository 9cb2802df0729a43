"""The hibari handler on its packaged voice: sentences stream one by one, bad input says why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import SpeechAudio, SpeechRequest, SpeechResult, VoiceListRequest
from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.testing import RecordingItem

# collected from the repository root too, where the plugin may not be installed
pytest.importorskip("localinfer_hibari")
pytest.importorskip("hibari")
from localinfer_hibari import HANDLER, plugin
from localinfer_hibari.handler import HibariHandler

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def handler() -> Iterator[HibariHandler]:
    location = packaged_path("hibari/assets")
    assert location is not None
    loaded = HibariHandler(ModelSource(str(location), options={"seed": 1}))
    loaded.load("cpu")
    yield loaded
    loaded.close()


def test_the_plugin_registers_its_handler_and_alias() -> None:
    found = discover()
    assert found.handler(HANDLER).task == "speech"
    entry = found.catalog["hibari"]
    assert entry.packaged == "hibari/assets" and entry in plugin.catalog


def test_each_sentence_is_emitted_as_it_is_made(handler: HibariHandler) -> None:
    item = RecordingItem(SpeechRequest("One sentence. Another one! And a third?"))
    handler.process([item])
    assert item.error is None
    pieces = [c for c in item.chunks if isinstance(c, SpeechAudio)]
    spoken = [c for c in pieces if any(c.pcm)]
    assert len(spoken) == 3  # one per sentence, with silent gaps between
    result = item.result
    assert isinstance(result, SpeechResult) and result.voice == "heart"
    assert result.sample_rate == 24_000
    assert result.audio_seconds == pytest.approx(sum(c.seconds for c in pieces), abs=1e-3)
    assert 1.5 < result.audio_seconds < 8


def test_the_same_seed_says_it_the_same_way(handler: HibariHandler) -> None:
    first, second = RecordingItem(SpeechRequest("Hello.")), RecordingItem(SpeechRequest("Hello."))
    handler.process([first])
    handler.process([second])
    assert b"".join(c.pcm for c in first.chunks) == b"".join(c.pcm for c in second.chunks)


def test_speed_changes_the_length(handler: HibariHandler) -> None:
    slow, fast = (RecordingItem(SpeechRequest("Hello there, friend.", speed=s)) for s in (0.5, 2.0))
    handler.process([slow, fast])
    assert slow.result.audio_seconds > 2.5 * fast.result.audio_seconds


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (SpeechRequest("   "), "input"),
        (SpeechRequest("x" * 5000), "input"),
        (SpeechRequest("Hi.", voice="nobody"), "voice"),
        (SpeechRequest("Hi.", speed=0.0), "speed"),
        (SpeechRequest("Hi.", speed=100.0), "speed"),
    ],
)
def test_bad_requests_fail_alone(
    handler: HibariHandler, request_: SpeechRequest, param: str
) -> None:
    bad, good = RecordingItem(request_), RecordingItem(SpeechRequest("Still here."))
    handler.process([bad, good])
    assert isinstance(bad.error, InvalidRequest) and bad.error.param == param
    assert good.error is None and good.result.audio_seconds > 0.3


def test_a_cancelled_item_stops_at_the_next_sentence(handler: HibariHandler) -> None:
    item = RecordingItem(SpeechRequest("One. Two. Three. Four. Five."), cancel_after=1)
    handler.process([item])
    assert len(item.chunks) == 1


def test_voices_lists_what_is_on_disk(handler: HibariHandler) -> None:
    item = RecordingItem(VoiceListRequest())
    handler.process([item])
    ids = [voice.id for voice in item.result]
    assert "heart" in ids
