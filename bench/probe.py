"""A paced ``GET /health`` probe on its own keep-alive connection.

It asks every ``interval_s`` (not back to back: a probe must not become load) and
times each answer from the first byte sent to the last byte read, over a plain
blocking socket: one request at a time needs nothing more, and the probe's own
overhead stays at a few microseconds.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import percentile
from bench.rawhttp import connect, encode_request, read_response


@dataclass
class ProbeResult:
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    #: localinfer's ``queue_depth`` from each answer, proof the queue stayed non-empty
    queue_depths: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "samples": len(lat),
            "failures": self.failures,
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "max_ms": max(lat) if lat else None,
            "queue_depth_min": min(self.queue_depths) if self.queue_depths else None,
            "queue_depth_median": percentile(self.queue_depths, 50),
        }


def _queue_depth(body: bytes) -> int | None:
    try:
        models = json.loads(body)["models"]
        return sum(int(m["queue_depth"]) for m in models.values())
    except (ValueError, AttributeError, KeyError, TypeError):
        return None


def probe_health(
    port: int,
    *,
    seconds: float,
    path: str = "/health",
    interval_s: float = 0.01,
    timeout_s: float = 5.0,
) -> ProbeResult:
    """Probe ``path`` every ``interval_s`` for ``seconds``."""
    result = ProbeResult()
    request = encode_request("GET", path, port)
    sock: socket.socket | None = None
    end = time.perf_counter() + seconds
    next_at = time.perf_counter()
    try:
        while next_at < end:
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at + interval_s, time.perf_counter())
            try:
                if sock is None:
                    sock = connect(port, timeout_s)
                started = time.perf_counter()
                sock.sendall(request)
                status, body = read_response(sock)
                if status != 200:
                    raise ConnectionError(f"/health answered {status}")
                result.latencies_ms.append((time.perf_counter() - started) * 1e3)
            except OSError:
                result.failures += 1
                if sock is not None:
                    sock.close()
                sock = None
                continue
            depth = _queue_depth(body)
            if depth is not None:
                result.queue_depths.append(depth)
    finally:
        if sock is not None:
            sock.close()
    return result
