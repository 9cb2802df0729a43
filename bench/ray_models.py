"""A CPU-bound model for the Ray replica benchmark: pure Python, so it holds the GIL and
more worker threads in one process cannot help; more replicas (processes) can."""

from __future__ import annotations

import os
from typing import Any

#: loop iterations per request (about 20 ms of one core here)
SPIN_ITERATIONS = int(os.environ.get("BENCH_SPIN_ITERATIONS", "400000"))


def spin(x: Any) -> Any:
    total = 0
    for i in range(SPIN_ITERATIONS):
        total += i * i
    return {"x": x, "total": total % 1000}


class Spin1:
    """Served on one replica."""

    name = "spin1"

    def infer(self, x: Any) -> Any:
        return spin(x)


class Spin2:
    """The same, served on two replicas."""

    name = "spin2"

    def infer(self, x: Any) -> Any:
        return spin(x)
