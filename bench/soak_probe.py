"""The soak's observer, a process of its own: ``/health`` at 5 Hz, the server's memory at 1 Hz,
what its handlers' caches hold (``/v1/stats``) every 5 s.

Apart from the load's process so that its busy event loop does not add to the latency
it measures. ``/health`` is asked on one keep-alive connection (a fresh one after an
error), on a fixed schedule: a slow answer delays the next probe, never skips it. Each
probe is timed twice: until this process has read the whole answer, and until the
answer's first bytes reached this machine's network stack (the kernel's receive
timestamp, ``SO_TIMESTAMPNS``): the difference is the probe's own wait for a core on a
machine the load keeps busy, which is not the server's.
Times are ``time.monotonic()`` (one clock for every process of the machine) minus the
``--t0`` the soak passes, so the samples line up with the load's events.

    python -m bench.soak_probe URL PID T0 OUT.json   # until SIGTERM (or the server ends)
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HEALTH_HZ = 5.0
MEMORY_EVERY_S = 1.0
#: bounded caches grow RSS without leaking (the llama.cpp prompt cache): read apart
CACHES_EVERY_S = 5.0
#: the kernel stamps each received packet (Linux's value; Python 3.11 lacks the name)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def footprint(server: Any) -> tuple[int, int, int]:
    """RSS, threads and open files of the server and every process it started (models
    served in processes of their own, ``--isolate``): a leak there counts too."""
    import psutil

    rss = threads = fds = 0
    for process in [server, *server.children(recursive=True)]:
        try:
            rss += process.memory_info().rss
            threads += process.num_threads()
            fds += process.num_fds()
        except psutil.Error:
            if process is server:
                raise
    return rss, threads, fds


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
        return int(sum(c["bytes"] for m in models for c in m.get("caches", {}).values()))
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None
    finally:
        connection.close()


class HealthProbe:
    """``GET /health`` on one keep-alive socket: (status, body, ms until the answer's first
    bytes arrived, ms until it was read)."""

    def __init__(self, host: str, port: int) -> None:
        self.request = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        #: the last answer said the server closes the connection after it
        self.closing = False

    def get(self) -> tuple[int, bytes, float, float]:
        sent = time.time()  # the kernel stamps packets on this clock
        self.sock.sendall(self.request)
        data, arrived = b"", None
        while True:
            chunk, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            for level, kind, raw in ancillary:
                if arrived is None and (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
                    seconds, nanoseconds = struct.unpack("qq", raw[:16])
                    arrived = seconds + nanoseconds / 1e9
            data += chunk
            head, blank, body = data.partition(b"\r\n\r\n")
            if blank and len(body) >= _content_length(head):
                break
        read = time.time()
        status = int(head.split(b" ", 2)[1])
        # the server ends a keep-alive connection after so many requests (hypercorn: 1000)
        self.closing = b"\r\nconnection: close" in head.lower()
        first = (arrived if arrived is not None else read) - sent
        return status, body, first * 1e3, (read - sent) * 1e3

    def close(self) -> None:
        self.sock.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise http.client.HTTPException("an answer without Content-Length")


def probe(url: str, pid: int, t0: float) -> dict[str, list[Any]]:
    import psutil

    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    server = psutil.Process(pid)
    parts = urlsplit(url)
    connection: HealthProbe | None = None
    # [t, ms until read, status code, "status" field or error, ms until it arrived]
    health: list[list[Any]] = []
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
                memory.append([round(now - t0, 2), *footprint(server)])
            except psutil.Error:
                break  # the server is gone
            next_memory += MEMORY_EVERY_S
        if now >= next_health:
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = HealthProbe(host, parts.port or 80)
                status, body, arrived_ms, ms = connection.get()
                state = json.loads(body).get("status", "?") if status == 200 else ""
                health.append(
                    [round(now - t0, 2), round(ms, 3), status, state, round(arrived_ms, 3)]
                )
                if connection.closing:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ms = (time.perf_counter() - started) * 1e3
                health.append([round(now - t0, 2), round(ms, 3), 0, type(exc).__name__, ms])
                if connection is not None:
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
