"""User-code models the tests serve (importable as ``tests.models:Name``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from pydantic import BaseModel


class Echo:
    """Echoes its arguments; records the thread it was built and called in."""

    name = "echo"

    def __init__(self) -> None:
        self.built_in = threading.current_thread().name
        self.device: str | None = None

    def setup(self, device: str) -> None:
        self.device = device

    def infer(self, text: str, repeat: int = 1) -> dict[str, object]:
        return {
            "text": text * repeat,
            "thread": threading.current_thread().name,
            "built_in": self.built_in,
            "device": self.device,
        }


class Words:
    """Streams words with a delay, and counts how many it produced (to prove cancellation)."""

    name = "words"
    produced = 0
    lock = threading.Lock()

    def infer(self, n: int = 5, delay_s: float = 0.0) -> Iterator[str]:
        for i in range(n):
            if delay_s:
                time.sleep(delay_s)
            with Words.lock:
                Words.produced += 1
            yield f"w{i} "


class Bytes:
    """Streams bytes."""

    name = "bytes"
    media_type = "audio/wav"

    def infer(self, n: int = 3) -> Iterator[bytes]:
        for i in range(n):
            yield bytes([i]) * 1000


class Sleeper:
    """Sleeps, then answers; counts calls so tests can tell whether a job ran."""

    name = "sleeper"
    calls = 0

    def infer(self, seconds: float = 0.0, tag: str = "") -> dict[str, object]:
        Sleeper.calls += 1
        time.sleep(seconds)
        return {"tag": tag}


class Flaky:
    """Raises on demand; otherwise answers."""

    name = "flaky"

    def infer(self, fail: bool = False, kind: str = "value") -> str:
        if fail:
            if kind == "exit":
                raise SystemExit("worker-killing failure")
            if kind == "memory":
                raise MemoryError("pretend the device ran out of memory")
            raise ValueError("boom: bad luck")
        return "fine"


class SlowLoader:
    """Takes a while to load."""

    name = "slow-loader"
    delay_s = 0.5

    def setup(self, device: str) -> None:
        time.sleep(self.delay_s)

    def infer(self) -> str:
        return "loaded"


class BrokenLoader:
    name = "broken-loader"

    def setup(self, device: str) -> None:
        raise FileNotFoundError("weights.safetensors not found")

    def infer(self) -> str:  # pragma: no cover - never loads
        return "unreachable"


class Point(BaseModel):
    x: float
    y: float


class Norm(BaseModel):
    norm: float


class NormAPI:
    """LitAPI-style with pydantic-annotated hooks and micro-batching."""

    name = "norm"
    max_batch_size = 8
    batch_timeout = 0.05
    batch_sizes: list[int] = []

    def setup(self, device: str) -> None:
        self.device = device

    def decode_request(self, request: Point) -> tuple[float, float]:
        return (request.x, request.y)

    def predict(self, batch: list[tuple[float, float]]) -> list[float]:
        NormAPI.batch_sizes.append(len(batch))
        return [(x * x + y * y) ** 0.5 for x, y in batch]

    def encode_response(self, output: float) -> Norm:
        return Norm(norm=output)


class StreamingAPI:
    """LitAPI-style streaming: predict yields, encode_response yields."""

    name = "lit-stream"
    stream = True

    def setup(self, device: str) -> None:
        pass

    def decode_request(self, request: dict[str, int]) -> int:
        return int(request["n"])

    def predict(self, n: int) -> Iterator[int]:
        yield from range(n)

    def encode_response(self, outputs: Iterator[int]) -> Iterator[dict[str, int]]:
        for value in outputs:
            yield {"value": value}


def make_echo() -> Echo:
    """A factory: called once per worker, inside the worker thread."""
    return Echo()


class Mirror:
    """Returns what it was called with: any JSON in, the same JSON out (for fuzzing)."""

    name = "mirror"

    def infer(self, *args: object, **kwargs: object) -> dict[str, object]:
        return {"args": list(args), "kwargs": kwargs}


class InputNames:
    """Names the inputs it got, whatever they hold: never fails (for fuzzing KServe tensors)."""

    name = "input-names"

    def infer(self, **inputs: object) -> dict[str, list[str]]:
        return {"names": sorted(inputs)}
