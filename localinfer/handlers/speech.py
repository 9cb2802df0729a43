"""What every text-to-speech handler checks and shares, whatever synthesises the audio.

Used by the speech plugins (hibari, Piper), so a bad request gets the same answer from
each, and each streams the same :class:`~localinfer.handlers.tasks.SpeechAudio` pieces.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import Handler, WorkItem
from localinfer.handlers.tasks import (
    SpeechAudio,
    SpeechRequest,
    SpeechResult,
    Voice,
    VoiceListRequest,
)

_T = TypeVar("_T")

#: OpenAI's bounds
MIN_SPEED, MAX_SPEED = 0.25, 4.0
MAX_INPUT_CHARS = 4096

#: the closing quotes or brackets after a sentence's end, then the space after them
_SENTENCE_END = re.compile('(?<=[.!?\u2026])(["\u201d\u2019)\\]]*)\\s+(?=\\S)')


def checked_voice(request: SpeechRequest, voices: Mapping[str, object], default: str) -> str:
    """The request's voice (or ``default``), after checking text and speed.

    Raises ``InvalidRequest`` saying what is wrong: no text, too much text, a speed out
    of bounds, a voice this model does not have.
    """
    if not request.text.strip():
        raise InvalidRequest("input is empty: there is nothing to say", param="input")
    if len(request.text) > MAX_INPUT_CHARS:
        raise InvalidRequest(
            f"input is {len(request.text)} characters; at most {MAX_INPUT_CHARS} are accepted",
            param="input",
        )
    if not MIN_SPEED <= request.speed <= MAX_SPEED:
        raise InvalidRequest(
            f"speed must be between {MIN_SPEED} and {MAX_SPEED}, not {request.speed}",
            param="speed",
        )
    voice = request.voice or default
    if voice not in voices:
        raise InvalidRequest(
            f"unknown voice {voice!r}; this model has: {', '.join(sorted(voices))}",
            param="voice",
        )
    return voice


def split_sentences(text: str) -> list[str]:
    """Sentences and lines: the pieces synthesised (and streamed) one at a time."""
    sentences: list[str] = []
    for line in text.splitlines():
        marked = _SENTENCE_END.sub(lambda m: m.group(1) + "\n", line)
        sentences += [part.strip() for part in marked.split("\n") if part.strip()]
    return sentences


def to_pcm16(samples: npt.NDArray[np.floating], sample_rate: int) -> SpeechAudio:
    """Float samples in [-1, 1] as a :class:`SpeechAudio` piece (clipped, 16-bit)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return SpeechAudio((clipped * 32767.0).astype("<i2").tobytes(), sample_rate)


def silence(seconds: float, sample_rate: int) -> Iterator[SpeechAudio]:
    """A pause between sentences (nothing for 0 s)."""
    count = int(seconds * sample_rate)
    if count > 0:
        yield SpeechAudio(bytes(2 * count), sample_rate)


def speak(
    item: WorkItem,
    request: SpeechRequest,
    voice: str,
    sentences: Iterable[npt.NDArray[np.floating] | None],
    sample_rate: int,
    gap_s: float,
) -> SpeechResult | None:
    """Emit each sentence's samples as it is made, a silent gap between two, and say how
    it went; ``None`` once the item is cancelled (checked before each sentence is made).

    ``sentences`` is lazy: pulling one synthesises it. ``None`` is a sentence with nothing
    to say (punctuation alone), skipped; a text made only of those gives no audio.
    """
    started, seconds, spoken = time.perf_counter(), 0.0, 0
    for samples in _until_cancelled(item, sentences):
        if samples is None:
            continue
        if spoken:
            for gap in silence(gap_s, sample_rate):
                item.emit(gap)
                seconds += gap.seconds
        piece = to_pcm16(samples, sample_rate)
        seconds += piece.seconds
        spoken += 1
        item.emit(piece)
    if item.cancelled:
        return None
    return SpeechResult(
        voice=voice,
        sample_rate=sample_rate,
        audio_seconds=round(seconds, 3),
        characters=len(request.text),
        synthesis_ms=round((time.perf_counter() - started) * 1e3, 3),
    )


def _until_cancelled(item: WorkItem, sentences: Iterable[_T]) -> Iterator[_T]:
    """``sentences``, each pulled (made) only while ``item`` is still wanted."""
    pending = iter(sentences)
    while not item.cancelled:
        try:
            yield next(pending)
        except StopIteration:
            return


class SpeechHandler(Handler):
    """A text-to-speech handler: answers a voice list or synthesises, one item at a time.

    Subclasses say which voices they have and how they synthesise; the dispatch on the
    request type, and its refusal, are the same for every engine.
    """

    def voices(self) -> list[Voice]:
        raise NotImplementedError

    def synthesise(self, request: SpeechRequest, item: WorkItem) -> SpeechResult | None:
        """Emit the audio a sentence at a time; ``None`` when the item was cancelled."""
        raise NotImplementedError

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            if item.cancelled:
                continue
            try:
                payload = item.payload
                if isinstance(payload, VoiceListRequest):
                    item.finish(self.voices())
                    continue
                if not isinstance(payload, SpeechRequest):
                    raise InvalidRequest(
                        f"{self.handler_name} takes a SpeechRequest, not {type(payload).__name__}"
                    )
                result = self.synthesise(payload, item)
            except Exception as exc:
                item.fail(exc)
                continue
            item.finish(result)
