from __future__ import annotations

import json

import pytest

from localinfer.handlers.subtitles import (
    format_timestamp,
    language_name,
    to_srt,
    to_text,
    to_verbose_json,
    to_vtt,
)
from localinfer.handlers.tasks import Segment, TranscriptionResult, Word

RESULT = TranscriptionResult(
    text=" Hello there. General Kenobi --> you are a bold one.",
    language="en",
    duration=3723.5,
    segments=[
        Segment(id=0, start=0.0, end=1.5, text=" Hello there.", tokens=(1, 2, 3)),
        Segment(id=1, start=1.5, end=2.0, text="   ", tokens=()),
        Segment(
            id=2,
            start=3661.0066,
            end=3723.5,
            text=" General Kenobi --> you are a bold one.",
            tokens=(4, 5),
            avg_logprob=-0.25,
            no_speech_prob=0.01,
            temperature=0.2,
            compression_ratio=1.1,
        ),
    ],
    words=[Word("Hello", 0.0, 0.6), Word("there.", 0.6, 1.5)],
)


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.0, "00:00:01,000", "00:00:01.000"),
        (61.2345, "00:01:01,234", "00:01:01.234"),
        (3599.9996, "01:00:00,000", "01:00:00.000"),
        (-0.5, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamp_formats(seconds: float, srt: str, vtt: str) -> None:
    assert format_timestamp(seconds, decimal_marker=",") == srt
    assert format_timestamp(seconds) == vtt


def test_srt() -> None:
    assert to_srt(RESULT) == (
        "1\n"
        "00:00:00,000 --> 00:00:01,500\n"
        "Hello there.\n"
        "\n"
        "2\n"
        "01:01:01,007 --> 01:02:03,500\n"
        "General Kenobi -> you are a bold one.\n"
        "\n"
    )


def test_vtt() -> None:
    assert to_vtt(RESULT) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\n"
        "Hello there.\n"
        "\n"
        "01:01:01.007 --> 01:02:03.500\n"
        "General Kenobi -> you are a bold one.\n"
        "\n"
    )


def test_text() -> None:
    assert to_text(RESULT) == "Hello there. General Kenobi --> you are a bold one.\n"


def test_a_result_without_segments_is_one_cue() -> None:
    result = TranscriptionResult(text=" Just text.", language="en", duration=2.25)
    assert to_srt(result) == "1\n00:00:00,000 --> 00:00:02,250\nJust text.\n\n"
    assert to_vtt(result) == "WEBVTT\n\n00:00:00.000 --> 00:00:02.250\nJust text.\n\n"
    empty = TranscriptionResult(text="", language="en", duration=1.0)
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n\n"


def test_verbose_json_has_openais_shape() -> None:
    body = to_verbose_json(RESULT, "transcribe", words=True)
    assert json.loads(json.dumps(body)) == body  # plain JSON types only
    assert list(body) == ["task", "language", "duration", "text", "segments", "words"]
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert body["duration"] == 3723.5
    assert body["segments"][2] == {
        "id": 2,
        "seek": 366101,
        "start": 3661.0066,
        "end": 3723.5,
        "text": " General Kenobi --> you are a bold one.",
        "tokens": [4, 5],
        "temperature": 0.2,
        "avg_logprob": -0.25,
        "compression_ratio": 1.1,
        "no_speech_prob": 0.01,
    }
    assert body["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.6},
        {"word": "there.", "start": 0.6, "end": 1.5},
    ]


def test_verbose_json_granularities() -> None:
    assert "words" not in to_verbose_json(RESULT, "translate")
    words_only = to_verbose_json(RESULT, "transcribe", segments=False, words=True)
    assert "segments" not in words_only and len(words_only["words"]) == 2
    no_words = TranscriptionResult(text="x", language="de", duration=1.0)
    assert to_verbose_json(no_words, "transcribe", words=True)["words"] == []


def test_language_names() -> None:
    assert language_name("en") == "english"
    assert language_name("HT") == "haitian creole"
    assert language_name("english") == "english"
    assert language_name("yue") == "cantonese"
