"""Speech to text with Whisper checkpoints through transformers.

Long audio is never truncated: transformers' long-form generation (Whisper paper, section
3.8) walks each file in 30 s windows, seeks to the last predicted timestamp so no word is
cut at a window edge, and re-decodes a window at higher temperatures when its output
looks degenerate (compression ratio) or unlikely (log-probability). Several requests go
through one ``generate`` call: their windows run side by side, and a request that is done
drops out of the batch while the longer ones continue.

Requests share a ``generate`` call when they agree on task, prompt, temperature and word
timestamps (transformers takes those once per call); languages may differ. A request
without a language has it detected on its first 30 s (``model.detect_language``).

What the result carries, and what it cannot:

- segment ``start``/``end`` come from Whisper's timestamp tokens, clamped to the audio;
- ``avg_logprob`` is the mean log-probability of the segment's tokens, ``compression_ratio``
  OpenAI's gzip ratio of its text; both describe the decode that was kept;
- ``temperature`` is the request's, and ``no_speech_prob`` is 0.0: transformers decides
  fallback and no-speech skipping inside ``generate`` and does not report either per
  window (windows it judged silent are already left out);
- ``words`` needs the checkpoint's cross-attention ``alignment_heads`` in its generation
  config; without them ``words`` is None (real checkpoints ship them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from localinfer.audio import SAMPLE_RATE, resample
from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.hub_code import NO_HUB_CODE
from localinfer.handlers.model_files import verify_model_files
from localinfer.handlers.tasks import (
    TRANSCRIPTION,
    Segment,
    TranscriptionRequest,
    TranscriptionResult,
    Word,
)
from localinfer.handlers.transcription import FALLBACK_TEMPERATURES, checked_request
from localinfer.handlers.whisper_segments import avg_logprob, compression_ratio, segment_words
from localinfer.handlers.whisper_streaming import WindowStreamer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Whisper sees 30 s at a time
WINDOW_SAMPLES = 30 * SAMPLE_RATE


class _Stopped(Exception):
    """Every request of the running batch was cancelled: abandon the generation."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A validated request: 16 kHz float32 audio, a language code, the prompt's tokens."""

    request: TranscriptionRequest
    audio: npt.NDArray[np.float32]
    language: str | None
    prompt_ids: tuple[int, ...] | None

    @property
    def group(self) -> tuple[str, str | None, float, bool]:
        r = self.request
        return (r.task, r.prompt or None, r.temperature, r.word_timestamps)


class WhisperHandler(Handler):
    """Transcription and translation to English with any Whisper checkpoint.

    Options (``ModelSource.options``): ``batch_size`` (requests per ``generate``, 8),
    ``dtype`` (float32, float16, bfloat16; float16 on CUDA, float32 elsewhere),
    ``max_new_tokens`` (per window; Whisper's 448 by default), ``temperature_fallback``
    (true), ``compression_ratio_threshold`` (1.35, transformers' scale),
    ``logprob_threshold`` (-1.0), ``no_speech_threshold`` (0.6),
    ``condition_on_prev_tokens`` (false: less prone to repetition loops).
    """

    task = TRANSCRIPTION
    handler_name = "transformers-whisper"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        options = source.options
        self.batch_size = int(options.get("batch_size", 8))
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {self.batch_size}")
        self.max_new_tokens: int | None = options.get("max_new_tokens")
        self.temperature_fallback = bool(options.get("temperature_fallback", True))
        self.thresholds = {
            "compression_ratio_threshold": options.get("compression_ratio_threshold", 1.35),
            "logprob_threshold": options.get("logprob_threshold", -1.0),
            "no_speech_threshold": options.get("no_speech_threshold", 0.6),
        }
        self.condition_on_prev_tokens = bool(options.get("condition_on_prev_tokens", False))
        self.multilingual = True
        #: language code -> its token id, for the languages this checkpoint knows
        self.languages: dict[str, int] = {}
        self.word_timestamps = False
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"
        self._dtype: Any = None
        self._eot = 0
        self._timestamp_begin = 0
        self._should_stop: Callable[[], bool] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, device: str) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        verify_model_files(self.source)
        common: dict[str, Any] = {
            "revision": self.source.revision,
            "trust_remote_code": self.source.trust_remote_code,
            "local_files_only": True,
        }
        name = str(self.source.options.get("dtype") or "")
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if name and name not in dtypes:
            raise ConfigurationError(f"dtype must be one of {', '.join(dtypes)}, not {name!r}")
        self._dtype = (
            dtypes[name]
            if name
            else (torch.float16 if device.startswith("cuda") else torch.float32)
        )
        try:
            self._processor = WhisperProcessor.from_pretrained(self.source.location, **common)
            model: Any = WhisperForConditionalGeneration.from_pretrained(
                self.source.location, dtype=self._dtype, **common, **NO_HUB_CODE
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot load Whisper from {self.source.location!r} (a directory, or a model "
                f"in the local Hugging Face cache): {exc}"
            ) from exc
        self._model = model.to(device).eval()
        self._device = device

        config = self._model.generation_config
        if getattr(config, "no_timestamps_token_id", None) is None:
            raise ConfigurationError(
                f"{self.source.location}: the generation config lacks no_timestamps_token_id, "
                "which timestamps and long-form transcription need"
            )
        self._timestamp_begin = int(config.no_timestamps_token_id) + 1
        self._eot = int(config.eos_token_id)
        lang_to_id: dict[str, int] = dict(getattr(config, "lang_to_id", None) or {})
        self.multilingual = bool(getattr(config, "is_multilingual", bool(lang_to_id)))
        self.languages = {
            token.strip("<|>"): int(token_id) for token, token_id in lang_to_id.items()
        }
        self.word_timestamps = bool(getattr(config, "alignment_heads", None))
        logger.info(
            "loaded %s on %s (%s): %s, %d languages, word timestamps %s",
            self.source.location,
            device,
            self._dtype,
            "multilingual" if self.multilingual else "English-only",
            len(self.languages),
            "available" if self.word_timestamps else "unavailable (no alignment heads)",
        )

    def close(self) -> None:
        self._model = None
        self._processor = None

    # --- serving ----------------------------------------------------------------------------

    def process(self, items: Sequence[WorkItem]) -> None:
        """Reject bad requests up front, and stop generating once every caller has gone."""
        live: list[WorkItem] = []
        for item in items:
            if item.cancelled:
                continue
            try:
                self._prepare(item.payload, resample_audio=False)
            except InvalidRequest as exc:
                item.fail(exc)
            else:
                live.append(item)
        streamed = [item for item in live if item.payload.stream]
        live = [item for item in live if not item.payload.stream]
        for item in streamed:
            self._serve_stream(item)
        if not live:
            return
        self._should_stop = lambda: all(item.cancelled for item in live)
        try:
            super().process(live)
        except _Stopped:
            return  # the worker finishes cancelled items
        finally:
            self._should_stop = None

    def _serve_stream(self, item: WorkItem) -> None:
        """One request alone (a streamer follows one sequence), its segments emitted as
        each 30 s window is settled, the rest when the result is."""
        self._should_stop = lambda: item.cancelled
        try:
            prepared = self._prepare(item.payload)
            streamer = WindowStreamer(
                self._processor.tokenizer,
                self._eot,
                self._timestamp_begin,
                self._check_stop,
                item.emit,
            )
            (result,) = self._transcribe([prepared], streamer)
            streamer.flush_rest(result)
        except _Stopped:
            return
        except Exception as exc:
            item.fail(exc)
            return
        finally:
            self._should_stop = None
        item.finish(result)

    def run_batch(self, inputs: list[TranscriptionRequest]) -> list[TranscriptionResult]:
        if self._model is None:
            raise RuntimeError("the model is not loaded")
        prepared = [self._prepare(request) for request in inputs]
        groups: dict[tuple[str, str | None, float, bool], list[int]] = {}
        for index, item in enumerate(prepared):
            groups.setdefault(item.group, []).append(index)
        results: list[TranscriptionResult | None] = [None] * len(inputs)
        for indices in groups.values():
            # longest first, so a batch's windows end at similar times
            indices.sort(key=lambda i: -prepared[i].audio.size)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for index, result in zip(
                    chunk, self._transcribe([prepared[i] for i in chunk]), strict=True
                ):
                    results[index] = result
        return [result for result in results if result is not None]

    # --- one generate call ------------------------------------------------------------------

    def _transcribe(
        self, batch: list[_Prepared], streamer: WindowStreamer | None = None
    ) -> list[TranscriptionResult]:
        import torch

        first = batch[0].request
        features = self._features([item.audio for item in batch])
        languages = self._languages(batch, features["input_features"])
        kwargs: dict[str, Any] = {
            "attention_mask": features["attention_mask"],
            "return_timestamps": True,
            "return_segments": True,
            "return_dict_in_generate": True,
            "output_scores": True,
            "condition_on_prev_tokens": self.condition_on_prev_tokens,
            "temperature": (
                FALLBACK_TEMPERATURES
                if first.temperature == 0 and self.temperature_fallback
                else first.temperature
            ),
            "monitor_progress": self._check_stop if streamer is None else streamer.progress,
            **{key: value for key, value in self.thresholds.items() if value is not None},
        }
        if self.max_new_tokens:
            kwargs["max_new_tokens"] = int(self.max_new_tokens)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if self.multilingual:
            kwargs["task"] = first.task
            kwargs["language"] = languages
        if batch[0].prompt_ids:
            kwargs["prompt_ids"] = torch.tensor(batch[0].prompt_ids, device=self._device)
        words = first.word_timestamps and self.word_timestamps
        attention = self._model.config._attn_implementation
        if words:
            kwargs["return_token_timestamps"] = True  # switches the model to eager attention
        try:
            with torch.inference_mode():
                output = self._model.generate(features["input_features"], **kwargs)
        finally:
            if words:
                self._model.config._attn_implementation = attention
        return [
            self._result(item, language, segments, words)
            for item, language, segments in zip(batch, languages, output["segments"], strict=True)
        ]

    def _features(self, audios: list[npt.NDArray[np.float32]]) -> dict[str, torch.Tensor]:
        """Log-mel features, padded to 30 s, or to the longest file when one is longer."""
        long_form = max(audio.size for audio in audios) > WINDOW_SAMPLES
        features = self._processor.feature_extractor(
            audios,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
            truncation=not long_form,
            padding="longest" if long_form else "max_length",
            device=self._device,
        )
        return {
            "input_features": features["input_features"].to(self._device, self._dtype),
            "attention_mask": features["attention_mask"].to(self._device),
        }

    def _languages(self, batch: list[_Prepared], input_features: torch.Tensor) -> list[str]:
        """Each request's language code: its own, or detected on its first 30 s."""
        import torch

        if not self.multilingual:
            return ["en"] * len(batch)
        missing = [i for i, item in enumerate(batch) if item.language is None]
        detected: dict[int, str] = {}
        if missing:
            ids_to_code = {token_id: code for code, token_id in self.languages.items()}
            with torch.inference_mode():
                ids = self._model.detect_language(input_features[missing, :, :3000])
            detected = {i: ids_to_code[int(t)] for i, t in zip(missing, ids.tolist(), strict=True)}
        return [item.language or detected[i] for i, item in enumerate(batch)]

    def _prompt_ids(self, prompt: str) -> tuple[int, ...]:
        """``<|startofprev|>`` + the prompt's last 223 tokens, as OpenAI's Whisper keeps."""
        try:
            ids = self._processor.get_prompt_ids(prompt, return_tensors="np").tolist()
        except ValueError as exc:  # the prompt holds a control token such as <|endoftext|>
            raise InvalidRequest(str(exc), param="prompt") from None
        limit = self._model.config.max_target_positions // 2 - 1
        return tuple(ids[:1] + ids[1:][-limit:])

    def _check_stop(self, progress: torch.Tensor) -> None:
        """Called by ``generate`` before each window."""
        if self._should_stop is not None and self._should_stop():
            raise _Stopped

    # --- results -----------------------------------------------------------------------------

    def _result(
        self,
        item: _Prepared,
        language: str,
        raw_segments: list[dict[str, Any]],
        words: bool,
    ) -> TranscriptionResult:
        tokenizer = self._processor.tokenizer
        duration = item.audio.size / SAMPLE_RATE
        temperature = float(item.request.temperature)
        segments: list[Segment] = []
        all_words: list[Word] = []
        for raw in raw_segments:
            tokens = [int(t) for t in raw["tokens"].tolist()]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            start = min(round(float(raw["start"]), 3), duration)
            end = min(max(round(float(raw["end"]), 3), start), duration)
            segment = Segment(
                id=len(segments),
                start=start,
                end=end,
                text=text,
                tokens=tuple(tokens),
                avg_logprob=avg_logprob(raw, tokens, temperature),
                no_speech_prob=0.0,
                temperature=temperature,
                compression_ratio=compression_ratio(text),
            )
            segments.append(segment)
            if words and "token_timestamps" in raw:
                all_words += self._words(
                    tokens, raw["token_timestamps"].tolist(), segment, language
                )
        return TranscriptionResult(
            text="".join(segment.text for segment in segments),
            language=language,
            duration=duration,
            segments=segments,
            words=all_words if words else None,
        )

    def _words(
        self, tokens: list[int], times: list[float], segment: Segment, language: str
    ) -> list[Word]:
        return segment_words(self._processor.tokenizer, self._eot, tokens, times, segment, language)

    # --- validation -------------------------------------------------------------------------

    def _prepare(self, request: TranscriptionRequest, *, resample_audio: bool = True) -> _Prepared:
        """Validate a request (InvalidRequest says what is wrong) and bring its audio to 16 kHz."""
        audio, language = checked_request(
            request,
            multilingual=self.multilingual,
            languages=self.languages if self.multilingual else {"en"},
        )
        prompt_ids = self._prompt_ids(request.prompt) if request.prompt else None
        if resample_audio and request.sample_rate != SAMPLE_RATE:
            audio = resample(audio, request.sample_rate, SAMPLE_RATE)
        return _Prepared(request, audio, language, prompt_ids)
