from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localinfer.audio import decode_audio
from localinfer.errors import InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.subtitles import to_srt, to_verbose_json
from localinfer.handlers.tasks import Segment, TranscriptionRequest, TranscriptionResult
from localinfer.handlers.transformers_whisper import WhisperHandler
from localinfer.handlers.whisper_segments import compression_ratio

pytest.importorskip("torch")
pytest.importorskip("transformers")

RATE = 16_000
#: a random model never says "end": cap each window's decode so tests stay fast
FAST = {"max_new_tokens": 24, "temperature_fallback": False}


def tone(seconds: float, rate: int = RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def loaded(path: Path, **options: Any) -> WhisperHandler:
    handler = WhisperHandler(ModelSource(str(path), options={**FAST, **options}))
    handler.load("cpu")
    return handler


class Recorder:
    """Wraps ``model.generate`` to see each call's arguments and each window it decodes."""

    def __init__(self, handler: WhisperHandler) -> None:
        self.calls: list[dict[str, Any]] = []
        self.windows: list[tuple[list[int], list[int]]] = []  # (seek, max_frames) per window
        self._handler = handler
        self._generate = handler._model.generate

    def __enter__(self) -> Recorder:
        def generate(features: Any, **kwargs: Any) -> Any:
            self.calls.append({"batch": features.shape[0], **kwargs})
            monitor = kwargs["monitor_progress"]

            def progress(p: Any) -> None:
                self.windows.append((p[:, 0].tolist(), p[:, 1].tolist()))
                monitor(p)

            return self._generate(features, **{**kwargs, "monitor_progress": progress})

        self._handler._model.generate = generate
        return self

    def __exit__(self, *exc: object) -> None:
        self._handler._model.generate = self._generate


@pytest.fixture(scope="module")
def whisper(tiny_whisper_dir: Path) -> WhisperHandler:
    return loaded(tiny_whisper_dir)


def assert_well_formed(result: TranscriptionResult, duration: float) -> None:
    assert isinstance(result, TranscriptionResult)
    assert result.duration == pytest.approx(duration)
    assert result.segments, "a random model still emits tokens"
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    for segment in result.segments:
        assert 0.0 <= segment.start <= segment.end <= result.duration
        assert segment.tokens and all(isinstance(t, int) for t in segment.tokens)
        assert segment.avg_logprob < 0.0
        assert segment.compression_ratio == compression_ratio(segment.text)
    assert result.text == "".join(s.text for s in result.segments)


def test_a_short_tone_gives_well_formed_segments(whisper: WhisperHandler) -> None:
    [result] = whisper.run_batch([TranscriptionRequest(audio=tone(5))])
    assert_well_formed(result, 5.0)
    assert result.language in whisper.languages  # detected
    assert result.words is None
    # the subtitle writers take it as it is
    assert to_srt(result).startswith("1\n00:00:0")
    assert to_verbose_json(result, "transcribe")["language"]


def test_long_audio_is_chunked_not_truncated(whisper: WhisperHandler) -> None:
    with Recorder(whisper) as recorder:
        [result] = whisper.run_batch([TranscriptionRequest(audio=tone(70), language="en")])
    assert_well_formed(result, 70.0)
    assert result.language == "en"
    # 7000 mel frames: decoded in windows that advance through all of them
    seeks = [seek[0] for seek, _ in recorder.windows]
    assert recorder.windows[0] == ([0], [7000])
    assert len(seeks) >= 3 and seeks == sorted(seeks) and seeks[-1] >= 6000
    assert result.segments[0].start < 30.0 < 60.0 < result.segments[-1].end


def test_requests_share_one_generate_call(whisper: WhisperHandler) -> None:
    requests = [
        TranscriptionRequest(audio=tone(5)),
        TranscriptionRequest(audio=tone(45), language="de"),
        TranscriptionRequest(audio=tone(12, rate=8_000), sample_rate=8_000, language="fr"),
    ]
    with Recorder(whisper) as recorder:
        results = whisper.run_batch(requests)
    assert len(recorder.calls) == 1
    assert recorder.calls[0]["batch"] == 3
    for result, duration in zip(results, (5.0, 45.0, 12.0), strict=True):
        assert_well_formed(result, duration)
    assert [r.language for r in results][1:] == ["de", "fr"]


def test_requests_that_differ_in_task_or_prompt_are_split(whisper: WhisperHandler) -> None:
    requests = [
        TranscriptionRequest(audio=tone(3)),
        TranscriptionRequest(audio=tone(3), task="translate", language="de"),
        TranscriptionRequest(audio=tone(3), prompt="localinfer, whisper"),
        TranscriptionRequest(audio=tone(4)),
    ]
    with Recorder(whisper) as recorder:
        results = whisper.run_batch(requests)
    assert sorted(call["batch"] for call in recorder.calls) == [1, 1, 2]
    tasks = {call["task"] for call in recorder.calls}
    assert tasks == {"transcribe", "translate"}
    [prompted] = [call for call in recorder.calls if "prompt_ids" in call]
    prompt_ids = prompted["prompt_ids"].tolist()
    tokenizer = whisper._processor.tokenizer
    assert prompt_ids[0] == tokenizer.convert_tokens_to_ids("<|startofprev|>")
    assert tokenizer.decode(prompt_ids[1:]) == " localinfer, whisper"
    for result, request in zip(results, requests, strict=True):
        assert_well_formed(result, request.audio.size / RATE)


def test_temperature_fallback_and_sampling(tiny_whisper_dir: Path) -> None:
    handler = loaded(tiny_whisper_dir, temperature_fallback=True)
    with Recorder(handler) as recorder:
        greedy, sampled = handler.run_batch(
            [
                TranscriptionRequest(audio=tone(3), language="en"),
                TranscriptionRequest(audio=tone(3), language="en", temperature=0.7),
            ]
        )
    temperatures = sorted(str(call["temperature"]) for call in recorder.calls)
    assert temperatures == ["(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)", "0.7"]
    assert_well_formed(greedy, 3.0)
    assert_well_formed(sampled, 3.0)
    assert {s.temperature for s in sampled.segments} == {0.7}


def test_word_timestamps_from_the_alignment_heads(whisper: WhisperHandler) -> None:
    [result] = whisper.run_batch(
        [TranscriptionRequest(audio=tone(6), language="en", word_timestamps=True)]
    )
    assert_well_formed(result, 6.0)
    assert result.words, "the tiny model has alignment heads: words come back"
    for word in result.words:
        assert word.word and word.word == word.word.strip()
        assert 0.0 <= word.start <= word.end <= result.duration
    # eager attention was only borrowed for the alignment
    assert whisper._model.config._attn_implementation != "eager"


def test_without_alignment_heads_words_are_none(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    copy = tmp_path / "no-heads"
    shutil.copytree(tiny_whisper_dir, copy)
    config_path = copy / "generation_config.json"
    config = json.loads(config_path.read_text())
    del config["alignment_heads"]
    config_path.write_text(json.dumps(config))
    handler = loaded(copy)
    assert not handler.word_timestamps
    [result] = handler.run_batch([TranscriptionRequest(audio=tone(2), word_timestamps=True)])
    assert result.words is None
    assert_well_formed(result, 2.0)


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (TranscriptionRequest(audio=np.zeros(0, np.float32)), "file"),
        (TranscriptionRequest(audio=np.zeros((100, 2), np.float32)), "file"),
        (TranscriptionRequest(audio=tone(1), language="klingon"), "language"),
        (TranscriptionRequest(audio=tone(1), task="summarise"), "task"),  # type: ignore[arg-type]
        (TranscriptionRequest(audio=tone(1), temperature=-1), "temperature"),
        (TranscriptionRequest(audio=tone(1), prompt="hi <|endoftext|>"), "prompt"),
    ],
    ids=["empty", "stereo", "language", "task", "temperature", "prompt"],
)
def test_invalid_requests(
    whisper: WhisperHandler, request_: TranscriptionRequest, param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        whisper.run_batch([request_])
    assert info.value.param == param


def test_english_only_models_refuse_to_translate(whisper: WhisperHandler) -> None:
    whisper.multilingual = False
    try:
        with pytest.raises(InvalidRequest, match="English-only"):
            whisper.run_batch([TranscriptionRequest(audio=tone(1), task="translate")])
        [result] = whisper.run_batch([TranscriptionRequest(audio=tone(1))])
        assert result.language == "en"
    finally:
        whisper.multilingual = True


class Item:
    def __init__(self, payload: TranscriptionRequest) -> None:
        self.payload, self.request_id, self.cancelled, self.done = payload, "r", False, False
        self.result: object = None
        self.error: BaseException | None = None

    def emit(self, chunk: object) -> None:
        raise AssertionError("transcriptions do not stream")

    def finish(self, result: object = None) -> None:
        self.result, self.done = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True


def test_process_fails_bad_items_and_serves_the_rest(whisper: WhisperHandler) -> None:
    good = Item(TranscriptionRequest(audio=tone(2), language="en"))
    bad = Item(TranscriptionRequest(audio=tone(2), language="xx"))
    whisper.process([good, bad])
    assert isinstance(good.result, TranscriptionResult)
    assert isinstance(bad.error, InvalidRequest)


def test_cancelled_work_stops_between_windows(whisper: WhisperHandler) -> None:
    item = Item(TranscriptionRequest(audio=tone(90), language="en"))
    with Recorder(whisper) as recorder:
        check = whisper._check_stop

        def caller_leaves_after_the_first_window(progress: Any) -> None:
            if recorder.windows[-1][0] != [0]:
                item.cancelled = True
            check(progress)

        whisper._check_stop = caller_leaves_after_the_first_window  # type: ignore[method-assign]
        try:
            whisper.process([item])
        finally:
            del whisper._check_stop
    assert not item.done  # the worker finishes cancelled items
    assert len(recorder.windows) == 2


def test_synthesised_speech_end_to_end(whisper: WhisperHandler, speech_wav: Path) -> None:
    audio = decode_audio(speech_wav.read_bytes(), max_seconds=30)
    [result] = whisper.run_batch([TranscriptionRequest(audio=audio)])
    assert_well_formed(result, audio.size / RATE)
    assert 1.0 < result.duration < 10.0


def test_tokens_group_into_words_with_their_times(whisper: WhisperHandler) -> None:
    tokenizer = whisper._processor.tokenizer
    tokens = tokenizer.encode(" the quick fox, jumps", add_special_tokens=False)
    timestamp = tokenizer.convert_tokens_to_ids("<|1.00|>")
    tokens = [timestamp, *tokens, timestamp + 100]
    times = [1.0 + 0.25 * i for i in range(len(tokens))]
    segment = Segment(id=0, start=1.0, end=times[-1], text="")
    words = whisper._words(tokens, times, segment, "en")
    assert [w.word for w in words] == ["the", "quick", "fox,", "jumps"]
    assert words[0].start == 1.25  # the first text token, after the timestamp
    assert words[-1].end == times[-1]  # where the closing timestamp token sits
    assert all(a.end <= b.start for a, b in pairwise(words))


def test_a_streamed_request_emits_each_window_as_it_is_settled(whisper: WhisperHandler) -> None:
    from localinfer.testing import RecordingItem

    item = RecordingItem(TranscriptionRequest(audio=tone(70), language="en", stream=True))
    with Recorder(whisper) as recorder:
        whisper.process([item])
    assert item.error is None
    result = item.result
    assert_well_formed(result, 70.0)
    assert recorder.calls[0]["batch"] == 1 and "streamer" in recorder.calls[0]
    segments = item.chunks
    assert all(isinstance(s, Segment) for s in segments)
    # one per window settled before the last, then the last window's text
    assert len(segments) >= len(recorder.windows) >= 3
    assert "".join(s.text for s in segments) == result.text
    assert [s.id for s in segments] == list(range(len(segments)))
    assert segments[0].start == 0.0 and segments[0].end <= 30.0
