"""A :class:`TranscriptionResult` in the response formats of OpenAI's audio endpoints.

``text``, ``srt``, ``vtt`` and ``verbose_json``, byte for byte as openai-whisper's writers
and the OpenAI API lay them out: SRT counts cues from 1 and writes ``00:00:01,000``; WebVTT
opens with ``WEBVTT`` and writes ``00:00:01.000``; every cue ends with a blank line.
Pure functions over the dataclasses: no torch, usable by any transcription handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from localinfer.handlers.tasks import Segment, TranscriptionResult

# Whisper's languages as "code:name" (``_`` for a space in a name)
_WHISPER_LANGUAGES = (
    "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french "
    "ja:japanese pt:portuguese tr:turkish pl:polish ca:catalan nl:dutch ar:arabic "
    "sv:swedish it:italian id:indonesian hi:hindi fi:finnish vi:vietnamese he:hebrew "
    "uk:ukrainian el:greek ms:malay cs:czech ro:romanian da:danish hu:hungarian ta:tamil "
    "no:norwegian th:thai ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin "
    "mi:maori ml:malayalam cy:welsh sk:slovak te:telugu fa:persian lv:latvian bn:bengali "
    "sr:serbian az:azerbaijani sl:slovenian kn:kannada et:estonian mk:macedonian "
    "br:breton eu:basque is:icelandic hy:armenian ne:nepali mn:mongolian bs:bosnian "
    "kk:kazakh sq:albanian sw:swahili gl:galician mr:marathi pa:punjabi si:sinhala "
    "km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan ka:georgian "
    "be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao uz:uzbek "
    "fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese sa:sanskrit "
    "lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar "
    "haw:hawaiian ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese"
)

#: ISO 639-1 (or -3) code to the English name that verbose_json reports
LANGUAGE_NAMES: dict[str, str] = {
    code: name.replace("_", " ")
    for code, name in (pair.split(":") for pair in _WHISPER_LANGUAGES.split())
}

#: OpenAI's Whisper reports ``seek`` in mel frames: 100 per second
_FRAMES_PER_SECOND = 100


#: other names Whisper accepts for its languages
_LANGUAGE_ALIASES = {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}  # fmt: skip
_LANGUAGE_CODES = {name: code for code, name in LANGUAGE_NAMES.items()} | _LANGUAGE_ALIASES


def language_code(language: str) -> str | None:
    """``"en"``, ``"English"`` or ``"<|en|>"`` -> ``"en"``; None for no Whisper language."""
    key = language.strip().lower().removeprefix("<|").removesuffix("|>")
    if key in LANGUAGE_NAMES:
        return key
    return _LANGUAGE_CODES.get(key)


def language_name(language: str) -> str:
    """``"en"`` -> ``"english"``; names and unknown codes pass through lower-cased."""
    key = language.strip().lower()
    return LANGUAGE_NAMES.get(key, key)


def format_timestamp(seconds: float, *, decimal_marker: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``,`` before the milliseconds for SRT); negatives clamp to zero."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def to_text(result: TranscriptionResult) -> str:
    return result.text.strip() + "\n"


def to_srt(result: TranscriptionResult) -> str:
    return "".join(
        f"{number}\n"
        f"{format_timestamp(start, decimal_marker=',')} --> "
        f"{format_timestamp(end, decimal_marker=',')}\n"
        f"{text}\n\n"
        for number, (start, end, text) in enumerate(_cues(result), start=1)
    )


def to_vtt(result: TranscriptionResult) -> str:
    cues = "".join(
        f"{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n\n"
        for start, end, text in _cues(result)
    )
    return "WEBVTT\n\n" + cues


def to_verbose_json(
    result: TranscriptionResult,
    task: str,
    *,
    segments: bool = True,
    words: bool = False,
) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` body; ``words`` as asked by ``timestamp_granularities``.

    ``seek`` is the segment's start in mel frames: the result does not keep the decoding
    window a segment came from, and nothing downstream relies on more.
    """
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(result.language),
        "duration": result.duration,
        "text": result.text,
    }
    if segments:
        body["segments"] = [_segment_json(segment) for segment in result.segments]
    if words:
        body["words"] = [
            {"word": word.word, "start": word.start, "end": word.end} for word in result.words or ()
        ]
    return body


def _segment_json(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "seek": round(segment.start * _FRAMES_PER_SECOND),
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def _cues(result: TranscriptionResult) -> Iterator[tuple[float, float, str]]:
    """(start, end, text) per subtitle; one cue for the whole text when there are no segments.

    ``-->`` inside a text would end the cue's timing line early in every player.
    """
    if not result.segments:
        if result.text.strip():
            yield 0.0, result.duration, _cue_text(result.text)
        return
    for segment in result.segments:
        text = _cue_text(segment.text)
        if text:
            yield segment.start, segment.end, text


def _cue_text(text: str) -> str:
    return text.strip().replace("-->", "->")
