"""Text to speech with hibari: each sentence is synthesised and streamed as soon as it is ready.

hibari turns text into phonemes (its own G2P, no espeak) and phonemes into 24 kHz audio
with a small ONNX model, about 100x faster than real time on one core. Every voice is a
model file of its own: the packaged one ("heart") and any other found in the model's
directory or hibari's cache are served; none is downloaded here (that is the hub's job:
``localinfer pull`` the ``hibari`` repo, or ``hibari --voice NAME`` once).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from localinfer.errors import ConfigurationError
from localinfer.handlers.base import ModelSource, WorkItem
from localinfer.handlers.speech import SpeechHandler, checked_voice, speak
from localinfer.handlers.tasks import (
    SPEECH,
    SpeechRequest,
    SpeechResult,
    Voice,
)

if TYPE_CHECKING:
    from hibari import Hibari

logger = logging.getLogger(__name__)

#: between two sentences, as a reader pauses
SENTENCE_GAP_S = 0.12


class HibariHandler(SpeechHandler):
    """hibari voices. Options: ``voice`` (the default voice, "heart"), ``threads``
    (onnxruntime threads, 1), ``seed`` (fixed noise: the same text gives the same audio),
    ``sentence_gap_s`` (silence between sentences, 0.12)."""

    task = SPEECH
    handler_name = "hibari"
    default_max_batch_size = 1

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        options = source.options
        self.default_voice = str(options.get("voice", "heart"))
        self.threads = int(options.get("threads", 1))
        seed = options.get("seed")
        self.seed: int | None = None if seed is None else int(seed)
        self.sentence_gap_s = float(options.get("sentence_gap_s", SENTENCE_GAP_S))
        #: voice name -> its ONNX file, for the voices on disk
        self.voice_files: dict[str, str] = {}
        self.voice_info: dict[str, dict[str, Any]] = {}
        self._models: dict[str, Hibari] = {}
        self._g2p: dict[bool, Any] = {}
        self.sample_rate = 24_000

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, device: str) -> None:
        if not device.startswith("cpu"):
            logger.info("hibari runs on the CPU; %s is not used", device)
        from hibari import SAMPLE_RATE
        from hibari.voices import VOICES, voice_path

        self.sample_rate = int(SAMPLE_RATE)
        self.voice_info = dict(VOICES)
        for name, info in VOICES.items():
            path = _voice_file(self.source.location, str(info["file"]))
            if path is None:
                try:  # the packaged voice, or one in hibari's own cache; never a download
                    path = voice_path(name, download_missing=False)
                except (FileNotFoundError, ValueError):
                    continue
            self.voice_files[name] = path
        if self.default_voice not in self.voice_files:
            raise ConfigurationError(
                f"hibari voice {self.default_voice!r} is not on disk; available: "
                f"{', '.join(self.voice_files) or 'none'}"
            )
        self._model(self.default_voice)("Ready.", seed=0)  # loads the G2P tables once
        logger.info(
            "hibari voices: %s (default %s)", ", ".join(self.voice_files), self.default_voice
        )

    def close(self) -> None:
        self._models.clear()
        self._g2p.clear()

    # --- serving ----------------------------------------------------------------------------

    def voices(self) -> list[Voice]:
        return [
            Voice(
                id=name,
                language=str(self.voice_info[name].get("language", "")),
                gender=str(self.voice_info[name].get("gender", "")),
                description=f"{self.voice_info[name].get('accent', '')} English, "
                f"distilled from Kokoro {self.voice_info[name].get('kokoro', '')}",
            )
            for name in self.voice_files
        ]

    def synthesise(self, request: SpeechRequest, item: WorkItem) -> SpeechResult | None:
        """Emit one :class:`SpeechAudio` per sentence; stop early once cancelled."""
        import numpy as np

        voice = checked_voice(request, self.voice_files, self.default_voice)
        model = self._model(voice)
        rng = np.random.default_rng(self.seed)
        sentences = (
            model.from_ids(model.ids(phonemes), request.speed, rng)
            for phonemes in _phonemes(model, request.text)
        )
        return speak(item, request, voice, sentences, self.sample_rate, self.sentence_gap_s)

    def _model(self, voice: str) -> Hibari:
        model = self._models.get(voice)
        if model is None:
            from hibari import Hibari

            british = bool(self.voice_info[voice].get("british"))
            model = Hibari(
                voice=voice,
                model=self.voice_files[voice],
                threads=self.threads,
                g2p=self._g2p.get(british),
            )
            self._g2p[british] = model.g2p  # one G2P per accent, shared by its voices
            self._models[voice] = model
        return model


def _phonemes(model: Hibari, text: str) -> Iterator[str]:
    """Phoneme strings, a sentence (or a long sentence's clause) at a time, lazily."""
    for sentence in model.split_sentences(text):
        yield from model.phonemize(sentence)


def _voice_file(location: str, name: str) -> str | None:
    for candidate in (os.path.join(location, name), os.path.join(location, "voices", name)):
        if os.path.isfile(candidate):
            return candidate
    return None
