"""Minimal HTTP/1.1 over a blocking socket, for the probe and the streaming client.

``http.client`` decodes chunked bodies line by line in Python; a stream of 100k tiny
SSE events would then time the client, not the server. Here a body is read in large
``recv`` calls and only its end is looked at.
"""

from __future__ import annotations

import json
import socket


def connect(port: int, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def encode_request(method: str, path: str, port: int, body: object = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body, separators=(",", ":")).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def _recv(sock: socket.socket, size: int = 1 << 18) -> bytes:
    chunk = sock.recv(size)
    if not chunk:
        raise ConnectionError("server closed the connection")
    return chunk


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response: ``(status, body)``; a chunked body is returned still chunk-framed."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        pieces = [body]
        tail = body[-5:]
        while tail != b"0\r\n\r\n":
            chunk = _recv(sock)
            pieces.append(chunk)
            tail = (tail + chunk)[-5:]
        return status, b"".join(pieces)
    length = 0
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    pieces = [body]
    received = len(body)
    while received < length:
        chunk = _recv(sock)
        pieces.append(chunk)
        received += len(chunk)
    return status, b"".join(pieces)
