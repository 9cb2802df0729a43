"""The models every server in the benchmarks runs: the same code behind every front end.

Plain classes with an ``infer`` method, so ``localinfer serve bench.models:NoOp`` serves
them as they are and the peers wrap the very same objects. Knobs come from the
environment (``BENCH_*``) because servers run in subprocesses started by the bench.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

#: the request body every load client sends, and what a no-op returns
PAYLOAD: dict[str, Any] = {"text": "hello", "n": 1}
REQUEST_BODY: dict[str, Any] = {"args": [PAYLOAD]}


def sleep_seconds() -> float:
    return float(os.environ.get("BENCH_SLEEP_S", "1.0"))


def matmul_seconds() -> float:
    return float(os.environ.get("BENCH_MATMUL_S", "1.0"))


def calibrate_matmul(seconds: float, size: int = 256) -> int:
    """How many ``size``² matmuls take ``seconds`` on this (otherwise idle) core.

    Done once by the bench, alone on the server core, and handed to every server as
    ``BENCH_MATMUL_ITERS``: workers calibrating side by side would each see half a core.
    """
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(5):
        a @ b
    probe = 100
    started = time.perf_counter()
    for _ in range(probe):
        a @ b
    per_op = (time.perf_counter() - started) / probe
    return max(1, round(seconds / per_op))


class NoOp:
    """Returns its input: what is left to measure is the serving machinery."""

    name = "noop"

    def infer(self, x: Any) -> Any:
        return x


class Sleep:
    """Blocks its worker for ``BENCH_SLEEP_S`` (I/O-like: the GIL is released)."""

    name = "sleep"

    def __init__(self) -> None:
        self.seconds = sleep_seconds()

    def infer(self, x: Any) -> Any:
        time.sleep(self.seconds)
        return x


class Matmul:
    """Runs ``BENCH_MATMUL_ITERS`` torch matmuls (about ``BENCH_MATMUL_S`` of compute).

    Many mid-sized ops rather than one huge one, like a model forward: the GIL is
    dropped inside each op and taken back between them.
    """

    name = "matmul"
    size = 256

    def setup(self) -> None:
        import torch

        self.a = torch.randn(self.size, self.size)
        self.b = torch.randn(self.size, self.size)
        given = os.environ.get("BENCH_MATMUL_ITERS")
        self.iterations = int(given) if given else calibrate_matmul(matmul_seconds(), self.size)

    def infer(self, x: Any) -> Any:
        c = self.a
        for _ in range(self.iterations):
            c = self.a @ self.b
        return {**x, "checksum": float(c[0, 0])} if isinstance(x, dict) else x


class Stream:
    """Yields ``n`` small items as fast as Python can: the per-item bridge cost is all there is."""

    name = "stream"

    def infer(self, n: int) -> Iterator[int]:
        yield from range(n)
