"""Demo models: text in/out, a text stream, an audio (bytes) stream, a batched LitAPI."""

from __future__ import annotations

import io
import math
import struct
import time
import wave
from collections.abc import Iterator


class Echo:
    """Returns its text, upper-cased if asked: ``{"args": ["hi"], "kwargs": {"upper": true}}``."""

    name = "echo"

    def infer(self, text: str, upper: bool = False) -> dict[str, str]:
        return {"text": text.upper() if upper else text}


class Countdown:
    """Streams ``n`` text pieces, ``delay_s`` apart: ``{"args": [5], "stream": true}``."""

    name = "countdown"

    def infer(self, n: int = 5, delay_s: float = 0.05) -> Iterator[str]:
        for i in range(n, 0, -1):
            time.sleep(delay_s)
            yield f"{i}... "
        yield "liftoff!"


class Tone:
    """Streams a sine tone as WAV bytes in 100 ms chunks: ``{"kwargs": {"hz": 440}}``."""

    name = "tone"
    media_type = "audio/wav"
    sample_rate = 16_000

    def infer(self, hz: float = 440.0, seconds: float = 1.0) -> Iterator[bytes]:
        if not 0 < seconds <= 60:
            raise ValueError("seconds must be in (0, 60]")
        total = int(self.sample_rate * seconds)
        header = io.BytesIO()
        with wave.open(header, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
            wav.setnframes(total)
        yield header.getvalue()
        step = self.sample_rate // 10
        for start in range(0, total, step):
            frames = range(start, min(start + step, total))
            samples = (
                int(12000 * math.sin(2 * math.pi * hz * i / self.sample_rate)) for i in frames
            )
            yield b"".join(struct.pack("<h", s) for s in samples)


class Squares:
    """A LitAPI-style model with micro-batching: ``{"input": 4}`` → ``{"output": 16.0}``."""

    name = "squares"
    max_batch_size = 16
    batch_timeout = 0.005

    def setup(self, device: str) -> None:
        self.device = device

    def decode_request(self, request: dict[str, float]) -> float:
        return float(request["input"])

    def batch(self, inputs: list[float]) -> list[float]:
        return inputs

    def predict(self, x: list[float]) -> list[float]:
        return [v * v for v in x]

    def unbatch(self, output: list[float]) -> list[float]:
        return output

    def encode_response(self, output: float) -> dict[str, float]:
        return {"output": output}


DEMO_MODELS = (Echo, Countdown, Tone, Squares)
