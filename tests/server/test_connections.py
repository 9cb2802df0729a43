"""The connection cap: past ``max_connections`` a connection is answered 503 (OpenAI
shape, ``Retry-After``) and closed; counts in ``/v1/stats`` and ``/metrics``."""

from __future__ import annotations

import json
import socket
import time

import httpx

from localinfer.server.connections import ConnectionLimit
from tests import models
from tests.support import ThreadedServer, define


def _connect(server: ThreadedServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _wait_open(server: ThreadedServer, count: int) -> ConnectionLimit:
    limit: ConnectionLimit = server.app.state.connections
    deadline = time.monotonic() + 10
    while limit.open != count:
        assert time.monotonic() < deadline, limit.snapshot()
        time.sleep(0.01)
    return limit


def test_past_max_connections_a_connection_gets_503_and_is_closed() -> None:
    with ThreadedServer([define(models.Echo)], max_connections=3) as server:
        _wait_open(server, 0)
        idle = [_connect(server) for _ in range(3)]
        _wait_open(server, 3)
        with _connect(server) as refused:
            refused.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            while chunk := refused.recv(65536):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), received[:200]
        assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
        error = json.loads(body)["error"]
        assert error["code"] == "too_many_connections"
        assert error["type"] == "service_unavailable"
        for sock in idle:
            sock.close()
        _wait_open(server, 0)  # freed: served again
        r = httpx.get(f"{server.url}/v1/stats")
        counts = r.json()["connections"]
        assert (counts["open"], counts["max"], counts["refused"]) == (1, 3, 1)
        r = httpx.get(f"{server.url}/metrics")
        assert r.status_code == 200
        assert "localinfer_connections_refused_total 1.0" in r.text, r.text[-800:]
        assert "localinfer_connections_max 3.0" in r.text


def test_the_limit_counts_and_refuses() -> None:
    limit = ConnectionLimit(2)
    assert limit.acquire() and limit.acquire() and not limit.acquire()
    assert limit.snapshot() == {"open": 2, "max": 2, "accepted": 2, "refused": 1}
    limit.release()
    assert limit.acquire()
    assert b"too_many_connections" in limit.refusal()
    unlimited = ConnectionLimit(None)
    assert all(unlimited.acquire() for _ in range(10_000))
