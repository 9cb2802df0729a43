"""Header limits: one line, all headers, their number → 431 in the OpenAI shape, from the
app (exact bounds) and from hypercorn itself (what is larger than it buffers)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from localinfer.server.middleware import HeaderLimits
from tests import models
from tests.support import ThreadedServer, define

LINE, TOTAL, COUNT = 1024, 4096, 20


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    with ThreadedServer(
        [define(models.Echo)],
        max_header_line_bytes=LINE,
        max_header_bytes=TOTAL,
        max_header_count=COUNT,
    ) as running:
        yield running


def _exchange(server: ThreadedServer, head: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return received


def _request(*headers: bytes, target: bytes = b"/health") -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _error(received: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


def test_headers_within_the_limits_pass(server: ThreadedServer) -> None:
    received = _exchange(server, _request(b"X-Fine: " + b"a" * (LINE - 100)))
    assert received.startswith(b"HTTP/1.1 200"), received[:200]


def test_one_long_header_line_is_431_naming_it(server: ThreadedServer) -> None:
    status, error = _error(_exchange(server, _request(b"X-Big: " + b"a" * (LINE + 1))))
    assert status == 431
    assert error["code"] == "request_header_fields_too_large" and error["param"] == "x-big"
    assert error["type"] == "invalid_request_error"


def test_all_headers_together_over_the_limit_is_431(server: ThreadedServer) -> None:
    headers = [f"X-H{i}: ".encode() + b"a" * (LINE - 20) for i in range(TOTAL // LINE + 1)]
    status, error = _error(_exchange(server, _request(*headers)))
    assert status == 431 and "together" in str(error["message"])


def test_too_many_headers_is_431(server: ThreadedServer) -> None:
    status, error = _error(_exchange(server, _request(*[b"X-N: 1"] * (COUNT + 1))))
    assert status == 431 and f"at most {COUNT}" in str(error["message"])


def test_a_long_request_target_is_431(server: ThreadedServer) -> None:
    status, _ = _error(_exchange(server, _request(target=b"/health?" + b"q" * LINE)))
    assert status == 431


def test_headers_larger_than_hypercorn_buffers_get_its_431_in_the_openai_shape(
    server: ThreadedServer,
) -> None:
    """A 100 KB header line: hypercorn refuses it before the app runs, in our shape."""
    received = _exchange(server, _request(b"X-Huge: " + b"a" * 100_000))
    status, error = _error(received)
    assert status == 431 and error["code"] == "request_header_fields_too_large"
    assert b"connection: close" in received.lower()


def test_malformed_framing_is_answered_in_the_openai_shape(server: ThreadedServer) -> None:
    status, error = _error(_exchange(server, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n"))
    assert status == 400 and error["code"] == "malformed_request"


def test_hypercorn_buffers_enough_for_every_request_the_app_answers() -> None:
    limits = HeaderLimits(line_bytes=LINE, total_bytes=TOTAL, count=COUNT)
    assert limits.incomplete_bytes > LINE + TOTAL + 4 * COUNT
