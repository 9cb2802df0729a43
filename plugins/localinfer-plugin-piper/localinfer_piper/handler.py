"""Text to speech with Piper: each sentence is synthesised and streamed as soon as it is ready.

Every ``*.onnx`` voice (with its ``.onnx.json``) under the model's directory is served,
named by its file name without ``.onnx`` (``en_US-joe-medium``); the first is the default
unless the ``voice`` option names another. ``speed`` maps to Piper's ``length_scale``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from localinfer.errors import ConfigurationError
from localinfer.handlers.base import ModelSource, WorkItem
from localinfer.handlers.speech import SpeechHandler, checked_voice, speak
from localinfer.handlers.tasks import SPEECH, SpeechRequest, SpeechResult, Voice

logger = logging.getLogger(__name__)


class PiperHandler(SpeechHandler):
    """Piper voices. Options: ``voice`` (the default), ``noise_scale``, ``noise_w_scale``."""

    task = SPEECH
    handler_name = "piper"
    default_max_batch_size = 1

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.options = dict(source.options)
        self.voice_files: dict[str, Path] = {}
        self._voices: dict[str, Any] = {}
        self.default_voice = ""

    def load(self, device: str) -> None:
        from piper import PiperVoice

        root = Path(self.source.location)
        if self.source.filename:
            root = root / self.source.filename
        files = [root] if root.is_file() else sorted(root.rglob("*.onnx"))
        self.voice_files = {
            path.name.removesuffix(".onnx"): path
            for path in files
            if path.with_name(path.name + ".json").exists()
        }
        if not self.voice_files:
            raise ConfigurationError(f"no Piper voice (.onnx + .onnx.json) under {root}")
        self.default_voice = str(self.options.get("voice") or next(iter(self.voice_files)))
        if self.default_voice not in self.voice_files:
            raise ConfigurationError(f"Piper voice {self.default_voice!r} is not under {root}")
        use_cuda = device.startswith("cuda")
        for name, path in self.voice_files.items():
            self._voices[name] = PiperVoice.load(path, use_cuda=use_cuda)
        logger.info("piper voices: %s (default %s)", ", ".join(self._voices), self.default_voice)

    def close(self) -> None:
        self._voices.clear()

    def voices(self) -> list[Voice]:
        return [
            Voice(
                id=name, language=str(self._voices[name].config.espeak_voice), description="Piper"
            )
            for name in self._voices
        ]

    def synthesise(self, request: SpeechRequest, item: WorkItem) -> SpeechResult | None:
        from piper import SynthesisConfig

        name = checked_voice(request, self.voice_files, self.default_voice)
        voice = self._voices[name]
        config = SynthesisConfig(
            length_scale=1.0 / request.speed,
            noise_scale=self.options.get("noise_scale"),
            noise_w_scale=self.options.get("noise_w_scale"),
        )
        sentences = (chunk.audio_float_array for chunk in voice.synthesize(request.text, config))
        # Piper's sentences are joined as Piper makes them: no gap is added
        return speak(item, request, name, sentences, int(voice.config.sample_rate), 0.0)
