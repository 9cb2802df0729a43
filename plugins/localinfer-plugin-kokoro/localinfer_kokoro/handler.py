"""Kokoro-82M through kokoro-onnx: each sentence is phonemised, synthesised and streamed.

Two layouts of the files are served, both found in the model's directory (never
downloaded here: that is the hub's job, ``localinfer pull kokoro-82m``):

- the Hub's ONNX export (``onnx/model*.onnx`` and one raw float32 style table per voice,
  ``voices/af_heart.bin``), which the catalog aliases fetch;
- kokoro-onnx's own release files (``kokoro-v1.0.onnx`` and ``voices-v1.0.bin``, a NumPy
  archive of every voice).

A voice's first letter is its language (``a`` American English, ``b`` British, ...), its
second its gender, as in Kokoro's voice list.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import ModelSource, WorkItem
from localinfer.handlers.speech import SpeechHandler, checked_voice, speak, split_sentences
from localinfer.handlers.tasks import SPEECH, SpeechRequest, SpeechResult, Voice

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

logger = logging.getLogger(__name__)

#: Kokoro's own bounds on ``speed`` (narrower than OpenAI's 0.25-4)
MIN_SPEED, MAX_SPEED = 0.5, 2.0
#: between two sentences (kokoro-onnx's own sentence pause)
SENTENCE_GAP_S = 0.25
#: where each layout keeps its graph, tried in this order
MODEL_FILES = ("onnx/model.onnx", "kokoro-v1.0.onnx", "model.onnx")
#: a style vector has 256 values, one row per phoneme count
STYLE_WIDTH = 256

#: a voice name's first letter -> the espeak-ng language that phonemises it
LANGUAGES = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}
_GENDERS = {"f": "female", "m": "male"}


class KokoroHandler(SpeechHandler):
    """Kokoro voices. Options: ``voice`` (the default voice, ``af_heart`` when present),
    ``model_file`` (the graph, relative to the model's directory), ``lang`` (an espeak-ng
    language for every voice, instead of the one its name says), ``threads``
    (onnxruntime intra-op threads; 0, the default, lets onnxruntime choose),
    ``sentence_gap_s`` (silence between sentences, 0.25)."""

    task = SPEECH
    handler_name = "kokoro"
    default_max_batch_size = 1

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        options = source.options
        self.options = dict(options)
        self.threads = int(options.get("threads", 0))
        self.sentence_gap_s = float(options.get("sentence_gap_s", SENTENCE_GAP_S))
        self.default_voice = ""
        #: voice name -> its style table, shape (rows, 1, 256)
        self.styles: dict[str, npt.NDArray[np.float32]] = {}
        self.sample_rate = 24_000
        self._kokoro: Kokoro | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, device: str) -> None:
        import onnxruntime as rt
        from kokoro_onnx import Kokoro
        from kokoro_onnx.config import SAMPLE_RATE

        root = Path(self.source.location)
        model_file = _model_file(root, self.options.get("model_file"))
        self.styles = _styles(root)
        wanted = self.options.get("voice")
        self.default_voice = str(wanted or ("af_heart" if "af_heart" in self.styles else ""))
        self.default_voice = self.default_voice or next(iter(self.styles))
        if self.default_voice not in self.styles:
            raise ConfigurationError(
                f"Kokoro voice {self.default_voice!r} is not under {root}; "
                f"available: {', '.join(self.styles)}"
            )
        options = rt.SessionOptions()
        options.intra_op_num_threads = self.threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in rt.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = rt.InferenceSession(str(model_file), options, providers=providers)
        # kokoro-onnx reads its voices from one NumPy archive; the Hub's layout has one raw
        # file per voice, so they are handed over through a temporary archive
        with tempfile.TemporaryDirectory() as scratch:
            archive = os.path.join(scratch, "voices.npz")
            np.savez(archive, **self.styles)  # type: ignore[arg-type]
            self._kokoro = Kokoro.from_session(session, archive)
            self._kokoro.voices = dict(self.styles)  # in memory, not the scratch file
        self.sample_rate = int(SAMPLE_RATE)
        self._say(self.default_voice, "Ready.", 1.0)  # loads espeak-ng and warms the graph
        logger.info(
            "kokoro %s: %d voices (default %s)",
            model_file.name,
            len(self.styles),
            self.default_voice,
        )

    def close(self) -> None:
        self._kokoro = None
        self.styles.clear()

    # --- serving ----------------------------------------------------------------------------

    def voices(self) -> list[Voice]:
        return [
            Voice(
                id=name,
                language=self._language(name),
                gender=_GENDERS.get(name[1:2], ""),
                description="Kokoro-82M",
            )
            for name in self.styles
        ]

    def synthesise(self, request: SpeechRequest, item: WorkItem) -> SpeechResult | None:
        """Emit one :class:`SpeechAudio` per sentence; stop early once cancelled."""
        voice = checked_voice(request, self.styles, self.default_voice)
        if not MIN_SPEED <= request.speed <= MAX_SPEED:
            raise InvalidRequest(
                f"Kokoro speaks at a speed between {MIN_SPEED} and {MAX_SPEED}, "
                f"not {request.speed}",
                param="speed",
            )
        sentences = (
            self._say(voice, sentence, request.speed) for sentence in split_sentences(request.text)
        )
        return speak(item, request, voice, sentences, self.sample_rate, self.sentence_gap_s)

    def _say(self, voice: str, sentence: str, speed: float) -> npt.NDArray[np.float32] | None:
        """One sentence's samples; ``None`` when it is only punctuation (nothing to say)."""
        kokoro = self._kokoro
        if kokoro is None:
            raise ConfigurationError("the Kokoro model is not loaded")
        language = self._language(voice)
        phonemes = kokoro.tokenizer.phonemize(sentence, language)
        if not any(symbol.isalpha() for symbol in kokoro.tokenizer.known(phonemes)):
            return None
        audio: Any
        audio, _ = kokoro.create(
            phonemes, self.styles[voice], speed=speed, lang=language, is_phonemes=True
        )
        return np.asarray(audio, dtype=np.float32)

    def _language(self, voice: str) -> str:
        return str(self.options.get("lang") or LANGUAGES.get(voice[:1], "en-us"))


def _model_file(root: Path, chosen: object) -> Path:
    candidates = [str(chosen)] if chosen else list(MODEL_FILES)
    for name in candidates:
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("*.onnx")) + sorted(root.glob("onnx/*.onnx"))
    if not chosen and len(found) == 1:
        return found[0]
    raise ConfigurationError(
        f"no Kokoro graph ({', '.join(candidates)}) under {root}"
        + (f"; found {', '.join(p.name for p in found)}: name one with model_file" if found else "")
    )


def _styles(root: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Every voice's style table: one NumPy archive (``voices*.bin``), or raw files."""
    for archive in sorted(root.glob("voices*.bin")) + sorted(root.glob("voices*.npz")):
        with np.load(archive) as voices:
            return {name: np.asarray(voices[name], dtype=np.float32) for name in voices.files}
    styles = {
        path.stem: np.fromfile(path, dtype="<f4").reshape(-1, 1, STYLE_WIDTH)
        for path in sorted((root / "voices").glob("*.bin"))
        if path.stat().st_size and path.stat().st_size % (4 * STYLE_WIDTH) == 0
    }
    if not styles:
        raise ConfigurationError(f"no Kokoro voices under {root}: voices-v1.0.bin or voices/*.bin")
    return styles
