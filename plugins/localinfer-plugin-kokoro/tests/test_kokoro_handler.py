"""The Kokoro handler on a tiny stand-in graph with Kokoro's interface, fetched from a local Hub.

Kokoro's weights cannot be downloaded here, so ``tiny_kokoro`` builds a graph with the same
inputs and outputs; the phonemes are real (espeak-ng through kokoro-onnx), and the files
travel through localinfer's own pull and resolve, as ``kokoro-82m``'s would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import SpeechAudio, SpeechRequest, SpeechResult, VoiceListRequest
from localinfer.hub.download import download_model, download_target
from localinfer.plugins import PluginSet
from localinfer.runtime.resolve import model_definition, resolve
from localinfer.testing import RecordingItem, serve
from tests.fixtures.hub_server import HubServer, hf_home, hub  # noqa: F401 (fixtures)

# collected from the repository root too, where the plugin may not be installed
pytest.importorskip("localinfer_kokoro")
pytest.importorskip("kokoro_onnx")
from localinfer_kokoro import HANDLER, KOKORO_REPO, plugin
from localinfer_kokoro.handler import KokoroHandler
from tiny_kokoro import SAMPLES_PER_TOKEN, hub_layout, release_layout


@pytest.fixture
def plugins() -> PluginSet:
    found = PluginSet()
    found.add(plugin, "localinfer-plugin-kokoro (tests)")
    return found


@pytest.fixture
def fetched(hub: HubServer, plugins: PluginSet, tmp_path: Path) -> PluginSet:  # noqa: F811
    """``kokoro-82m`` pulled from a local Hub that also holds files it must not fetch."""
    hub.add_directory(
        KOKORO_REPO,
        hub_layout(tmp_path / "export"),
        **{
            "onnx/model_quantized.onnx": b"another precision, not asked for",
            "onnx/model_fp16.onnx": b"another precision, not asked for",
            "README.md": b"# Kokoro",
        },
    )
    download_model(download_target("kokoro-82m", plugins.catalog))
    assert sorted(hub.fetched()) == [
        "onnx/model.onnx",
        "voices/af_heart.bin",
        "voices/bm_george.bin",
    ]
    return plugins


@pytest.fixture
def pulled(fetched: PluginSet) -> Iterator[KokoroHandler]:
    resolved = resolve("kokoro-82m", fetched)
    assert resolved.handler.load_class() is KokoroHandler
    handler = KokoroHandler(resolved.source)
    handler.load("cpu")
    yield handler
    handler.close()


def spoken(item: RecordingItem) -> list[SpeechAudio]:
    return [c for c in item.chunks if isinstance(c, SpeechAudio) and any(c.pcm)]


def samples(piece: SpeechAudio) -> np.ndarray:
    return np.frombuffer(piece.pcm, dtype="<i2").astype(np.float32) / 32767.0


def test_the_plugin_names_its_handler_and_hub_aliases(plugins: PluginSet) -> None:
    assert plugins.handler(HANDLER).task == "speech"
    for alias in ("kokoro-82m", "kokoro-82m-q8"):
        entry = plugins.catalog[alias]
        assert entry.repo == KOKORO_REPO and entry.handler == HANDLER
        assert entry.options["model_file"] in entry.files


def test_each_sentence_is_phonemised_synthesised_and_emitted(pulled: KokoroHandler) -> None:
    item = RecordingItem(SpeechRequest("Hello there. How are you today? Fine!"))
    pulled.process([item])
    assert item.error is None
    pieces = spoken(item)
    assert len(pieces) == 3
    result = item.result
    assert isinstance(result, SpeechResult) and result.voice == "af_heart"
    assert result.sample_rate == 24_000
    everything = [c for c in item.chunks if isinstance(c, SpeechAudio)]
    assert result.audio_seconds == pytest.approx(sum(c.seconds for c in everything), abs=1e-3)
    # the graph makes SAMPLES_PER_TOKEN a phoneme token: a longer sentence, more audio
    assert pieces[1].seconds > pieces[2].seconds > 0.5 * SAMPLES_PER_TOKEN * 3 / 24_000


def test_speed_and_voice_reach_the_graph(pulled: KokoroHandler) -> None:
    slow, fast = (RecordingItem(SpeechRequest("Good morning.", speed=s)) for s in (0.5, 2.0))
    george = RecordingItem(SpeechRequest("Good morning.", voice="bm_george"))
    pulled.process([slow, fast, george])
    assert spoken(slow)[0].seconds == pytest.approx(4 * spoken(fast)[0].seconds, rel=0.1)
    # af_heart's style is 0.2 everywhere and bm_george's 0.6: gains 0.3 and 0.7
    heart = RecordingItem(SpeechRequest("Good morning."))
    pulled.process([heart])
    ratio = np.abs(samples(spoken(george)[0])).max() / np.abs(samples(spoken(heart)[0])).max()
    assert ratio == pytest.approx(0.7 / 0.3, rel=0.02)


def test_voices_say_their_language_and_gender(pulled: KokoroHandler) -> None:
    item = RecordingItem(VoiceListRequest())
    pulled.process([item])
    listed = {(v.id, v.language, v.gender) for v in item.result}
    assert listed == {("af_heart", "en-us", "female"), ("bm_george", "en-gb", "male")}


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (SpeechRequest("   "), "input"),
        (SpeechRequest("Hi.", voice="af_nobody"), "voice"),
        (SpeechRequest("Hi.", speed=0.3), "speed"),  # OpenAI's range, not Kokoro's
        (SpeechRequest("Hi.", speed=3.0), "speed"),
    ],
)
def test_bad_requests_fail_alone(
    pulled: KokoroHandler, request_: SpeechRequest, param: str
) -> None:
    bad, good = RecordingItem(request_), RecordingItem(SpeechRequest("Still here."))
    pulled.process([bad, good])
    assert isinstance(bad.error, InvalidRequest) and bad.error.param == param
    assert good.error is None and good.result.audio_seconds > 0.1


def test_punctuation_alone_says_nothing_as_every_voice_does(pulled: KokoroHandler) -> None:
    item = RecordingItem(SpeechRequest("... !!"))
    pulled.process([item])
    assert item.error is None and item.chunks == []
    assert item.result.audio_seconds == 0


def test_a_cancelled_item_stops_at_the_next_sentence(pulled: KokoroHandler) -> None:
    item = RecordingItem(SpeechRequest("One. Two. Three. Four."), cancel_after=1)
    pulled.process([item])
    assert len(item.chunks) == 1


def test_kokoro_onnx_release_files_serve_too(tmp_path: Path) -> None:
    handler = KokoroHandler(
        ModelSource(str(release_layout(tmp_path)), options={"voice": "ff_siwis"})
    )
    handler.load("cpu")
    item = RecordingItem(SpeechRequest("Bonjour tout le monde."))
    handler.process([item])
    assert item.result.voice == "ff_siwis" and len(spoken(item)) == 1
    assert {v.id: v.language for v in handler.voices()} == {"af_sky": "en-us", "ff_siwis": "fr-fr"}


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"model\.onnx"):
        KokoroHandler(ModelSource(str(tmp_path))).load("cpu")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="voices"):
        KokoroHandler(ModelSource(str(tmp_path))).load("cpu")


@pytest.mark.anyio
async def test_served_over_http_with_its_voices_and_its_own_speed_range(
    fetched: PluginSet,
) -> None:
    definition = model_definition(resolve("kokoro-82m", fetched))
    async with serve([definition]) as http:
        voices = (await http.get("/v1/audio/voices")).json()["data"]
        assert {(v["model"], v["id"]) for v in voices} == {
            ("kokoro-82m", "af_heart"),
            ("kokoro-82m", "bm_george"),
        }
        body = {"model": "kokoro-82m", "input": "Hello there. Goodbye.", "voice": "bm_george"}
        wav = await http.post("/v1/audio/speech", json={**body, "response_format": "wav"})
        assert wav.status_code == 200 and wav.content.startswith(b"RIFF")
        assert len(wav.content) > 44 + 2 * 24_000 * 0.3
        slow = await http.post("/v1/audio/speech", json={**body, "speed": 0.3})
        assert slow.status_code == 400 and slow.json()["error"]["param"] == "speed"
