"""A pipeline: transcribe audio with one served model, then summarise it with another.

The handler holds no weights; it calls the other models through ``self.context`` —
in-process, through their queues, never over HTTP. The worker thread waits for each
call, which is fine: the other models' workers do the work.

Input (``POST /v1/infer/example-transcript-summary``, or KServe named inputs):
``{"audio": "<base64 WAV>"}`` or ``{"samples": [float, ...], "sample_rate": 16000}``,
plus ``"stream": true`` to stream the summary's text as it is generated.
Output: ``{"transcript": "...", "summary": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from localinfer.errors import InvalidArguments
from localinfer.handlers.base import Handler, ModelSource
from localinfer.handlers.tasks import (
    INFER,
    GenerationRequest,
    GenerationResult,
    TranscriptionRequest,
    TranscriptionResult,
)


def wav_to_samples(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV → mono float32 samples in [-1, 1], and the sample rate."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getsampwidth() != 2:
                raise InvalidArguments("audio must be 16-bit PCM WAV", param="audio")
            frames = wav.readframes(wav.getnframes())
            channels, rate = wav.getnchannels(), wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise InvalidArguments(f"audio is not a WAV file: {exc}", param="audio") from None
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return pcm.reshape(-1, channels).mean(axis=1), rate


def read_audio(payload: Any) -> tuple[np.ndarray, int]:
    if not isinstance(payload, dict):
        raise InvalidArguments("send {'audio': '<base64 WAV>'} or {'samples': [...]}")
    if isinstance(payload.get("audio"), str):
        try:
            return wav_to_samples(base64.b64decode(payload["audio"], validate=True))
        except binascii.Error:
            raise InvalidArguments("audio is not valid base64", param="audio") from None
    samples, rate = payload.get("samples"), payload.get("sample_rate", 16_000)
    if not isinstance(samples, list) or not samples or not isinstance(rate, int) or rate <= 0:
        raise InvalidArguments("send {'audio': '<base64 WAV>'} or {'samples': [...]}")
    return np.asarray(samples, dtype=np.float32), rate


class TranscriptSummaryHandler(Handler):
    task = INFER
    handler_name = "example-transcript-summary"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.transcriber = ""
        self.summariser = ""
        self.instruction = ""

    def load(self, device: str) -> None:
        """Read which models to call (the catalog entry's options win over the config)."""
        config = json.loads((Path(self.source.location) / "config.json").read_text())
        settings = {**config, **self.source.options}
        self.transcriber = str(settings["transcriber"])
        self.summariser = str(settings["summariser"])
        self.instruction = str(settings.get("instruction", "Summarise this transcript."))

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [self.summarise(payload) for payload in inputs]

    def summarise(self, payload: Any) -> dict[str, str] | Iterator[str]:
        audio, rate = read_audio(payload)
        transcript = self.context.call(
            self.transcriber, TranscriptionRequest(audio=audio, sample_rate=rate)
        )
        assert isinstance(transcript, TranscriptionResult)
        request = GenerationRequest(
            messages=(
                {"role": "system", "content": self.instruction},
                {"role": "user", "content": transcript.text},
            ),
            max_new_tokens=128,
        )
        if payload.get("stream"):
            return self.context.stream(self.summariser, request)
        summary = self.context.call(self.summariser, request)
        assert isinstance(summary, GenerationResult)
        return {"transcript": transcript.text, "summary": summary.text}
