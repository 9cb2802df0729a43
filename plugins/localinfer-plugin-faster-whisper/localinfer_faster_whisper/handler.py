"""Transcription and translation with Whisper models in CTranslate2 format (faster-whisper).

localinfer has already decoded the upload to mono float32 samples, so faster-whisper gets
an array and never opens a file (its PyAV decoder stays unused). One request is
transcribed at a time per worker: faster-whisper walks a file in 30 s windows with
temperature fallback and yields segments lazily, so a cancelled request stops at the
next segment. A streamed request (``stream=True``) has each segment emitted as it is
decoded, before the result. Segments, words and their timings come back as localinfer's
:class:`~localinfer.handlers.tasks.TranscriptionResult`; the routes format every
response type from it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from localinfer.audio import SAMPLE_RATE, resample
from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.tasks import (
    TRANSCRIPTION,
    Segment,
    TranscriptionRequest,
    TranscriptionResult,
    Word,
)
from localinfer.handlers.transcription import FALLBACK_TEMPERATURES, checked_request

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)


class FasterWhisperHandler(Handler):
    """Whisper through faster-whisper: any CTranslate2 Whisper directory or cached repo.

    Options (``ModelSource.options``): ``compute_type`` (``int8`` on CPU, ``float16`` on
    CUDA; any CTranslate2 type), ``cpu_threads`` (the usable cores, at most 4),
    ``beam_size`` (5), ``temperature_fallback`` (true), ``condition_on_previous_text``
    (false: less prone to repetition loops), ``vad_filter`` (false; needs onnxruntime),
    and ``transcribe_options``: any other ``WhisperModel.transcribe`` keyword arguments.
    """

    task = TRANSCRIPTION
    handler_name = "faster-whisper"
    #: faster-whisper transcribes one file per call: batching requests gains nothing
    default_max_batch_size = 1
    default_batch_window_ms = 0.0

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        options = source.options
        self.beam_size = int(options.get("beam_size", 5))
        if self.beam_size < 1:
            raise ConfigurationError(f"beam_size must be at least 1, not {self.beam_size}")
        self.temperature_fallback = bool(options.get("temperature_fallback", True))
        self.extra: dict[str, Any] = {
            "condition_on_previous_text": bool(options.get("condition_on_previous_text", False)),
            "vad_filter": bool(options.get("vad_filter", False)),
            **dict(options.get("transcribe_options") or {}),
        }
        self.multilingual = True
        self.languages: frozenset[str] = frozenset()
        self._model: WhisperModel | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, device: str) -> None:
        from faster_whisper import WhisperModel

        kind, _, index = device.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ConfigurationError(f"faster-whisper runs on cpu or cuda, not {device!r}")
        options = self.source.options
        compute_type = str(options.get("compute_type") or ("int8" if kind == "cpu" else "float16"))
        try:
            self._model = WhisperModel(
                self.source.location,
                device=kind,
                device_index=int(index or 0),
                compute_type=compute_type,
                cpu_threads=int(options.get("cpu_threads") or _usable_cores(limit=4)),
                revision=self.source.revision,
                local_files_only=True,  # downloading is the hub layer's job
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot load a CTranslate2 Whisper model from {self.source.location!r}: {exc}"
            ) from exc
        self.multilingual = bool(self._model.model.is_multilingual)
        self.languages = frozenset(self._model.supported_languages)
        logger.info(
            "loaded %s on %s (%s, %s)",
            self.source.location,
            device,
            compute_type,
            "multilingual" if self.multilingual else "English-only",
        )

    def close(self) -> None:
        self._model = None

    # --- serving ----------------------------------------------------------------------------

    def process(self, items: Sequence[WorkItem]) -> None:
        """One request at a time; a bad request fails alone, a cancelled one stops early."""
        for item in items:
            if item.cancelled:
                continue
            try:
                emit = item.emit if getattr(item.payload, "stream", False) else None
                result = self.transcribe(item.payload, cancelled=_cancelled(item), emit=emit)
            except Exception as exc:
                item.fail(exc)
                continue
            if result is not None:
                item.finish(result)

    def run_batch(self, inputs: list[TranscriptionRequest]) -> list[TranscriptionResult]:
        results = [self.transcribe(request) for request in inputs]
        return [result for result in results if result is not None]

    def transcribe(
        self,
        request: TranscriptionRequest,
        cancelled: Callable[[], bool] | None = None,
        emit: Callable[[Segment], None] | None = None,
    ) -> TranscriptionResult | None:
        """Transcribe (or translate) one request; None when ``cancelled()`` turned true.

        ``emit``: called with each segment as soon as it is decoded."""
        if self._model is None:
            raise RuntimeError("the model is not loaded")
        audio, language = self._prepare(request)
        if cancelled is not None and cancelled():
            return None
        segments, info = self._model.transcribe(
            audio,
            language=language,
            task=request.task,
            beam_size=self.beam_size,
            temperature=self._temperatures(request.temperature),
            initial_prompt=request.prompt or None,
            word_timestamps=request.word_timestamps,
            **self.extra,
        )
        duration = audio.size / SAMPLE_RATE
        kept: list[Segment] = []
        words: list[Word] = []
        for raw in segments:  # lazy: each step decodes the next window
            segment = _segment(raw, len(kept), duration)
            kept.append(segment)
            words += _words(raw.words or (), segment)
            if emit is not None:
                emit(segment)
            if cancelled is not None and cancelled():
                return None
        return TranscriptionResult(
            text="".join(segment.text for segment in kept),
            language=info.language,
            duration=duration,
            segments=kept,
            words=words if request.word_timestamps else None,
        )

    # --- validation -------------------------------------------------------------------------

    def _prepare(self, request: TranscriptionRequest) -> tuple[npt.NDArray[np.float32], str | None]:
        """16 kHz mono samples and a language code, or InvalidRequest saying what is wrong."""
        if not isinstance(request, TranscriptionRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a TranscriptionRequest, not {type(request).__name__}"
            )
        audio, language = checked_request(
            request, multilingual=self.multilingual, languages=self.languages
        )
        if language is None and not self.multilingual:
            language = "en"  # nothing to detect
        if request.sample_rate != SAMPLE_RATE:
            audio = resample(audio, request.sample_rate, SAMPLE_RATE)
        return audio, language

    def _temperatures(self, temperature: float) -> tuple[float, ...]:
        if temperature == 0 and self.temperature_fallback:
            return FALLBACK_TEMPERATURES
        return (float(temperature),)


def _segment(raw: Any, index: int, duration: float) -> Segment:
    """A faster-whisper segment as localinfer's, its times clamped to the audio."""
    start = min(round(float(raw.start), 3), duration)
    end = min(max(round(float(raw.end), 3), start), duration)
    return Segment(
        id=index,
        start=start,
        end=end,
        text=str(raw.text),
        tokens=tuple(int(token) for token in raw.tokens),
        avg_logprob=round(float(raw.avg_logprob), 6),
        no_speech_prob=round(float(raw.no_speech_prob), 6),
        temperature=float(raw.temperature or 0.0),
        compression_ratio=round(float(raw.compression_ratio), 6),
    )


def _words(raw_words: Sequence[Any], segment: Segment) -> list[Word]:
    """Words without their leading space (as OpenAI returns them), within the segment."""
    words = []
    for raw in raw_words:
        text = str(raw.word).strip()
        if not text:
            continue
        start = min(max(round(float(raw.start), 3), segment.start), segment.end)
        end = min(max(round(float(raw.end), 3), start), segment.end)
        words.append(Word(word=text, start=start, end=end))
    return words


def _cancelled(item: WorkItem) -> Callable[[], bool]:
    return lambda: item.cancelled


def _usable_cores(limit: int) -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(limit, count))
