"""The soak's observer, a process of its own: ``/health`` at 5 Hz, the server's memory at 1 Hz,
what its handlers' caches hold (``/v1/stats``) every 5 s.

Apart from the load's process so that its busy event loop does not add to the latency
it measures. ``/health`` is asked on one keep-alive connection (a fresh one after an
error), on a fixed schedule: a slow answer delays the next probe, never skips it.
Times are ``time.monotonic()`` (one clock for every process of the machine) minus the
``--t0`` the soak passes, so the samples line up with the load's events.

    python -m bench.soak_probe URL PID T0 OUT.json   # until SIGTERM (or the server ends)
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HEALTH_HZ = 5.0
MEMORY_EVERY_S = 1.0
#: bounded caches grow RSS without leaking (the llama.cpp prompt cache): read apart
CACHES_EVERY_S = 5.0


def cache_bytes(host: str, port: int | None) -> int | None:
    """Bytes in every model's handler caches (``/v1/stats``), on a connection of its own
    so the /health schedule keeps its own; None when the server cannot say."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/v1/stats")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        models = json.loads(body)["models"].values()
        return sum(c["bytes"] for m in models for c in m.get("caches", {}).values())
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None
    finally:
        connection.close()


def probe(url: str, pid: int, t0: float) -> dict[str, list[Any]]:
    import psutil

    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    server = psutil.Process(pid)
    parts = urlsplit(url)
    connection: http.client.HTTPConnection | None = None
    health: list[list[Any]] = []  # [t, ms, status code, "status" field or error]
    memory: list[list[Any]] = []  # [t, rss bytes, threads, open fds]
    caches: list[list[Any]] = []  # [t, bytes held by handler caches]
    host = parts.hostname or "127.0.0.1"
    next_health = next_memory = next_caches = time.monotonic()
    while not stopped:
        now = time.monotonic()
        if now >= next_caches:
            held = cache_bytes(host, parts.port)
            if held is not None:
                caches.append([round(now - t0, 2), held])
            next_caches += CACHES_EVERY_S
        if now >= next_memory:
            try:
                memory.append(
                    [
                        round(now - t0, 2),
                        server.memory_info().rss,
                        server.num_threads(),
                        server.num_fds(),
                    ]
                )
            except psutil.Error:
                break  # the server is gone
            next_memory += MEMORY_EVERY_S
        if now >= next_health:
            if connection is None:
                connection = http.client.HTTPConnection(host, parts.port, timeout=10)
            started = time.perf_counter()
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                body = response.read()
                ms = (time.perf_counter() - started) * 1e3
                state = json.loads(body).get("status", "?") if response.status == 200 else ""
                health.append([round(now - t0, 2), round(ms, 3), response.status, state])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ms = (time.perf_counter() - started) * 1e3
                health.append([round(now - t0, 2), round(ms, 3), 0, type(exc).__name__])
                connection.close()
                connection = None
            next_health += 1.0 / HEALTH_HZ
        time.sleep(max(0.0, min(next_health, next_memory, next_caches) - time.monotonic()))
    if connection is not None:
        connection.close()
    return {"health": health, "memory": memory, "caches": caches}


def main(argv: list[str]) -> int:
    url, pid, t0, out = argv
    result = probe(url, int(pid), float(t0))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
