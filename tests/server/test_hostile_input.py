"""A battery of hostile and broken requests against one live server, then proof nothing was lost.

Each case names what it sends, the status, the error ``type`` and ``code``, and a fragment
of the message it must get back; every error body has the OpenAI shape (KServe's on
``/v2``). The server serves tiny real models (chat, embeddings, speech) and user code,
with an API key, an allowed CORS origin and small limits, so every bound is reachable.
After the battery the same server answers good requests and no worker restarted.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import models
from tests.fixtures.audio import tone_wav
from tests.support import ASR, CHAT, EMBED, ThreadedServer, define, tiny_models

KEY = "battery-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ALLOWED_ORIGIN = "http://allowed.example"
MAX_BODY = 256 * 1024
MESSAGES = [{"role": "user", "content": "Say something."}]
GOOD_CHAT = {"model": CHAT, "messages": MESSAGES, "max_tokens": 2}


@pytest.fixture(scope="module")
def server(
    tiny_llama_dir: Path, tiny_bert_dir: Path, tiny_whisper_dir: Path
) -> Iterator[ThreadedServer]:
    definitions = [
        *tiny_models(tiny_llama_dir, tiny_bert_dir, tiny_whisper_dir, whisper_tokens=8),
        define(models.Echo),
        define(models.Mirror),
    ]
    with ThreadedServer(
        definitions,
        headers=AUTH,
        api_key=KEY,
        cors_origins=[ALLOWED_ORIGIN],
        offline=True,
        max_body_bytes=MAX_BODY,
        max_audio_bytes=128 * 1024,
        max_audio_seconds=3,
        max_messages=64,
        max_input_chars=20_000,
        max_embedding_inputs=16,
        body_timeout_s=5,
    ) as running:
        yield running


def multipart(fields: dict[str, str], file: bytes | None, boundary: str = "b0undary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    if file is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n".encode()
            + file
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


FORM = {"content-type": "multipart/form-data; boundary=b0undary"}
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    """One bad request and what it must get back."""

    id: str
    path: str
    status: int
    code: str | None
    fragment: str
    method: str = "POST"
    body: Any = None  # JSON-able, sent as JSON
    content: bytes | None = None  # raw bytes instead
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "invalid_request_error"
    auth: bool = True
    kserve: bool = False  # answered in KServe's {"error": "..."} shape


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def chat(**overrides: Any) -> dict[str, Any]:
    return {**GOOD_CHAT, **overrides}


# one line-pair per case reads as a table: keep the formatter out of it
# fmt: off
CASES = [
    # -- JSON that is not JSON ------------------------------------------------------------
    Case("malformed-json", "/v1/chat/completions", 400, "invalid_request", "not valid JSON",
         content=b'{"model": "tiny-chat", "messages": [', headers=JSON),
    Case("truncated-json", "/v1/chat/completions", 400, "invalid_request", "not valid JSON",
         content=json.dumps(GOOD_CHAT).encode()[:25], headers=JSON),
    Case("empty-body", "/v1/chat/completions", 400, "invalid_request", "body is empty",
         content=b"", headers=JSON),
    Case("invalid-utf8", "/v1/chat/completions", 400, "invalid_request", "not valid UTF-8",
         content=b'{"model": "\xff\xfe", "messages": []}', headers=JSON),
    Case("lone-surrogate", "/v1/chat/completions", 400, "invalid_request", "surrogate",
         content=b'{"model": "tiny-chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
         headers=JSON),
    Case("nan-literal", "/v1/chat/completions", 400, "invalid_request", "NaN is not a JSON number",
         content=b'{"model": "tiny-chat", "messages": [], "temperature": NaN}', headers=JSON),
    Case("huge-integer", "/v1/chat/completions", 400, "invalid_request", "too many digits",
         content=b'{"model": "tiny-chat", "max_tokens": ' + b"9" * 5000 + b"}", headers=JSON),
    Case("deeply-nested", "/v1/chat/completions", 400, "invalid_request", "nested too deeply",
         content=b"[" * 100_000 + b"]" * 100_000, headers=JSON),
    Case("nested-in-a-field", "/v1/chat/completions", 400, "invalid_request", "nested too deeply",
         content=b'{"model": "tiny-chat", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
         headers=JSON),
    Case("top-level-array", "/v1/chat/completions", 400, "invalid_request", "valid dictionary",
         body=[GOOD_CHAT]),
    Case("top-level-string", "/v1/embeddings", 400, "invalid_request", "valid dictionary",
         body="hello"),
    # -- wrong types and values ------------------------------------------------------------
    Case("messages-not-a-list", "/v1/chat/completions", 400, "invalid_request", "messages",
         body=chat(messages="hello")),
    Case("model-not-a-string", "/v1/chat/completions", 400, "invalid_request", "model",
         body=chat(model=5)),
    Case("temperature-a-string", "/v1/chat/completions", 400, "invalid_request", "temperature",
         body=chat(temperature="hot")),
    Case("temperature-out-of-range", "/v1/chat/completions", 400, "invalid_request",
         "temperature", body=chat(temperature=1e308)),
    Case("stream-not-a-bool", "/v1/chat/completions", 400, "invalid_request", "stream",
         body=chat(stream="yes please")),
    Case("unknown-role", "/v1/chat/completions", 400, "invalid_request", "messages.0.role",
         body=chat(messages=[{"role": "wizard", "content": "hi"}])),
    Case("n-above-the-limit", "/v1/chat/completions", 400, "invalid_request", "n",
         body=chat(n=9)),
    Case("user-content-null", "/v1/chat/completions", 400, "invalid_request", "needs content",
         body=chat(messages=[{"role": "user", "content": None}])),
    Case("unknown-response-format", "/v1/chat/completions", 400, "invalid_request",
         "response_format", body=chat(response_format={"type": "nonsense"})),
    Case("schema-too-deep", "/v1/chat/completions", 400, "schema_too_complex",
         "MAX_SCHEMA_DEPTH", body=chat(response_format={"type": "json_schema", "json_schema": {
             "name": "deep", "schema": _nested(40)}})),
    Case("top-logprobs-above-20", "/v1/chat/completions", 400, "invalid_request",
         "top_logprobs", body=chat(logprobs=True, top_logprobs=21)),
    Case("five-stop-sequences", "/v1/chat/completions", 400, "invalid_request",
         "at most 4 stop", body=chat(stop=list("abcde"))),
    Case("empty-messages", "/v1/chat/completions", 400, "invalid_request", "messages",
         body=chat(messages=[])),
    Case("giant-message-list", "/v1/chat/completions", 413, "request_too_large",
         "at most 64 are accepted", body=chat(messages=MESSAGES * 65)),
    Case("text-over-the-limit", "/v1/chat/completions", 413, "request_too_large",
         "at most 20000", body=chat(messages=[{"role": "user", "content": "x" * 20_001}])),
    Case("max-tokens-negative", "/v1/chat/completions", 400, "invalid_request", "max_tokens",
         body=chat(max_tokens=-1)),
    Case("max-tokens-zero", "/v1/chat/completions", 400, "invalid_request", "max_tokens",
         body=chat(max_tokens=0)),
    Case("max-tokens-huge", "/v1/chat/completions", 400, "invalid_request", "largest accepted",
         body=chat(max_tokens=10**12)),
    Case("max-tokens-beyond-int64", "/v1/chat/completions", 400, "invalid_request",
         "largest accepted", body=chat(max_tokens=10**30)),
    Case("max-tokens-fraction", "/v1/chat/completions", 400, "invalid_request", "max_tokens",
         body=chat(max_tokens=1.5)),
    Case("completion-max-tokens-negative", "/v1/completions", 400, "invalid_request",
         "max_tokens", body={"model": CHAT, "prompt": "hi", "max_tokens": -5}),
    Case("image-with-invalid-base64", "/v1/chat/completions", 400, "invalid_request",
         "does not accept image parts",
         body=chat(messages=[{"role": "user", "content": [
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!not*base64"}}]}])),
    Case("embeddings-unknown-encoding", "/v1/embeddings", 400, "invalid_request",
         "encoding_format", body={"model": EMBED, "input": "hi", "encoding_format": "base65"}),
    Case("embeddings-empty-list", "/v1/embeddings", 400, "invalid_request", "must not be empty",
         body={"model": EMBED, "input": []}),
    Case("embeddings-token-arrays", "/v1/embeddings", 400, "invalid_request",
         "token arrays are not supported", body={"model": EMBED, "input": [[1, 2, 3]]}),
    Case("embeddings-too-many", "/v1/embeddings", 413, "request_too_large", "at most 16",
         body={"model": EMBED, "input": ["a"] * 17}),
    Case("embeddings-empty-string", "/v1/embeddings", 400, "invalid_request",
         "empty string", body={"model": EMBED, "input": ["a", ""]}),
    # -- sizes ---------------------------------------------------------------------------------
    Case("body-over-the-limit", "/v1/chat/completions", 413, "request_too_large",
         f"exceeds the limit of {MAX_BODY} bytes", content=b" " * (MAX_BODY + 1), headers=JSON),
    Case("extra-huge-field", "/v1/chat/completions", 413, "request_too_large",
         "exceeds the limit", body=chat(padding="x" * MAX_BODY)),
    # -- models and paths ----------------------------------------------------------------------
    Case("unknown-model", "/v1/chat/completions", 404, "model_not_found", "does not exist",
         body=chat(model="no-such-model")),
    Case("path-like-model", "/v1/chat/completions", 404, "model_not_found", "does not exist",
         body=chat(model="../../etc/passwd")),
    Case("path-like-infer-model", "/v1/infer/..%2F..%2Fetc%2Fpasswd", 404, "not_found",
         "Not Found", body={"args": ["x"]}),
    Case("path-like-model-info", "/v1/models/..%2F..%2Fetc%2Fpasswd", 404, "model_not_found",
         "does not exist", method="GET"),
    Case("path-like-load", "/v1/models/..%2F..%2Fetc%2Fpasswd/load", 400, "invalid_request",
         "not a valid model id"),
    Case("absolute-path-load", "/v1/models/%2Fetc%2Fpasswd/load", 400, "invalid_request",
         "not a valid model id"),
    Case("path-like-download", "/v1/downloads", 400, "invalid_request", "not a valid model id",
         body={"model": "../../etc/passwd"}),
    Case("path-like-kserve-model", "/v2/models/..%2F..%2Fetc%2Fpasswd", 404, None,
         "does not exist", method="GET", kserve=True),
    Case("model-of-another-task", "/v1/embeddings", 400, "invalid_request", "serves chat",
         body={"model": CHAT, "input": "hi"}),
    Case("bad-capability-header", "/v1/chat/completions", 400, "invalid_request",
         "not of the form key=value", body=GOOD_CHAT, headers={"x-capability": "==="}),
    Case("infer-unknown-field", "/v1/infer/echo", 422, "invalid_arguments", "unknown field",
         body={"argz": ["x"]}),
    Case("infer-wrong-arguments", "/v1/infer/echo", 422, "invalid_arguments",
         "arguments do not match", body={"args": [1, 2, 3, 4]}),
    Case("infer-receiver-as-keyword", "/v1/infer/mirror", 422, "invalid_arguments", "'self'",
         body={"kwargs": {"self": 1}}),
    # -- content types ---------------------------------------------------------------------------
    Case("text-plain-to-json-route", "/v1/chat/completions", 415, "unsupported_media_type",
         "application/json", content=json.dumps(GOOD_CHAT).encode(),
         headers={"content-type": "text/plain"}),
    Case("form-to-json-route", "/v1/embeddings", 415, "unsupported_media_type",
         "application/json", content=b"model=tiny-embed&input=hi",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("multipart-to-json-route", "/v1/infer/echo", 415, "unsupported_media_type",
         "application/json", content=multipart({"args": "x"}, None), headers=FORM),
    Case("json-to-audio-route", "/v1/audio/transcriptions", 415, "unsupported_media_type",
         "multipart/form-data", body={"model": ASR}),
    # -- audio uploads ---------------------------------------------------------------------------
    Case("audio-corrupt", "/v1/audio/transcriptions", 400, "invalid_request",
         "cannot decode the audio", content=multipart({"model": ASR}, b"RIFF\x00\x01junk" * 10),
         headers=FORM),
    Case("audio-empty", "/v1/audio/transcriptions", 400, "invalid_request", "file is empty",
         content=multipart({"model": ASR}, b""), headers=FORM),
    Case("audio-truncated-wav", "/v1/audio/transcriptions", 400, "invalid_request",
         "truncated WAV", content=multipart({"model": ASR}, tone_wav(0.5)[:5000]), headers=FORM),
    Case("audio-no-file-part", "/v1/audio/transcriptions", 400, "invalid_request", "'file'",
         content=multipart({"model": ASR}, None), headers=FORM),
    Case("audio-no-model", "/v1/audio/transcriptions", 400, "invalid_request", "model",
         content=multipart({}, tone_wav(0.5)), headers=FORM),
    Case("audio-unknown-format", "/v1/audio/transcriptions", 400, "invalid_request",
         "response_format", content=multipart({"model": ASR, "response_format": "mp3"},
                                              tone_wav(0.5)), headers=FORM),
    Case("audio-multipart-truncated", "/v1/audio/transcriptions", 400, "invalid_request",
         "no 'file' part", content=multipart({"model": ASR}, tone_wav(0.5))[:-40], headers=FORM),
    Case("audio-multipart-no-boundary", "/v1/audio/transcriptions", 400, "invalid_request",
         "malformed multipart", content=multipart({"model": ASR}, tone_wav(0.5)),
         headers={"content-type": "multipart/form-data"}),
    # the parser's own error (starlette 1.0 let it out as a 500)
    Case("audio-multipart-bad-part-header", "/v1/audio/transcriptions", 400, "invalid_request",
         "malformed multipart", content=b"--b0undary\r\nX[bad: 1\r\n\r\nx\r\n--b0undary--\r\n",
         headers=FORM),
    Case("audio-too-long", "/v1/audio/transcriptions", 413, "request_too_large",
         "at most 3 s", content=multipart({"model": ASR}, tone_wav(seconds=3.5)), headers=FORM),
    Case("audio-file-over-the-limit", "/v1/audio/transcriptions", 413, "request_too_large",
         "exceeds the limit", content=multipart({"model": ASR}, b"\x00" * (2 * 1024 * 1024)),
         headers=FORM),
    # -- KServe v2 -------------------------------------------------------------------------------
    Case("kserve-not-json", "/v2/models/tiny-embed/infer", 400, None, "not valid JSON",
         content=b"{", headers=JSON, kserve=True),
    Case("kserve-shape-mismatch", "/v2/models/tiny-embed/infer", 400, None, "holds 3",
         body={"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
         kserve=True),
    Case("kserve-unknown-datatype", "/v2/models/tiny-embed/infer", 400, None,
         "unsupported datatype",
         body={"inputs": [{"name": "t", "shape": [1], "datatype": "STRING", "data": ["a"]}]},
         kserve=True),
    Case("kserve-huge-shape", "/v2/models/tiny-embed/infer", 400, None, "too large",
         body={"inputs": [{"name": "t", "shape": [2**40, 2**40], "datatype": "BYTES",
                           "data": ["a"]}]}, kserve=True),
    Case("kserve-float-beyond-its-type", "/v2/models/tiny-whisper/infer", 400, None,
         "not a valid FP32",
         body={"inputs": [{"name": "audio", "shape": [2], "datatype": "FP32",
                           "data": [0.5, 1e39]}]}, kserve=True),
    Case("kserve-nan-parameter", "/v2/models/tiny-chat/infer", 400, None, "NaN",
         content=b'{"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", '
         b'"data": ["hi"]}], "parameters": {"temperature": NaN}}', headers=JSON, kserve=True),
    # -- HTTP, auth and browsers -----------------------------------------------------------------
    Case("unknown-route", "/v1/nope", 404, "not_found", "Not Found", method="GET"),
    Case("wrong-method", "/v1/chat/completions", 405, "method_not_allowed",
         "Method Not Allowed", method="GET"),
    Case("missing-api-key", "/v1/models", 401, "invalid_api_key", "missing or invalid API key",
         method="GET", auth=False, kind="authentication_error"),
    Case("wrong-api-key", "/v1/models", 401, "invalid_api_key", "missing or invalid API key",
         method="GET", auth=False, headers={"authorization": f"Bearer {KEY}x"},
         kind="authentication_error"),
    Case("wrong-x-api-key", "/v1/models", 401, "invalid_api_key", "API key", method="GET",
         auth=False, headers={"x-api-key": KEY[:-1]}, kind="authentication_error"),
    Case("key-in-basic-auth", "/v1/models", 401, "invalid_api_key", "API key", method="GET",
         auth=False, headers={"authorization": f"Basic {KEY}"}, kind="authentication_error"),
    Case("host-not-the-bind-address", "/v1/models", 400, "host_not_allowed",
         "is not one this server answers to", method="GET",
         headers={"host": "attacker.example:8000"}),
    Case("host-lookalike", "/v1/models", 400, "host_not_allowed", "allowed_hosts",
         method="GET", headers={"host": "localhost.attacker.example"}),
    Case("cross-site-simple-post", "/v1/chat/completions", 403, "origin_not_allowed",
         "not allowed", content=json.dumps(GOOD_CHAT).encode(),
         headers={"content-type": "text/plain", "origin": "http://evil.example"},
         kind="permission_error"),
    Case("cross-site-form-post", "/v1/models/tiny-chat/load", 403, "origin_not_allowed",
         "cors_origins", headers={"origin": "null"}, kind="permission_error"),
    Case("cors-preflight-from-other-origin", "/v1/chat/completions", 403, "origin_not_allowed",
         "CORS preflight refused", method="OPTIONS", auth=False, kind="permission_error",
         headers={"origin": "http://evil.example", "access-control-request-method": "POST"}),
]
# fmt: on


def send(server: ThreadedServer, case: Case) -> httpx.Response:
    headers = {**(AUTH if case.auth else {}), **case.headers}
    kwargs: dict[str, Any] = {"headers": headers}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.body is not None:
        kwargs["content"] = json.dumps(case.body).encode()
        headers.setdefault("content-type", "application/json")
    return httpx.request(case.method, f"{server.url}{case.path}", timeout=30, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_its_status_and_message(server: ThreadedServer, case: Case) -> None:
    r = send(server, case)
    assert r.status_code == case.status, (r.status_code, r.text[:500])
    body = r.json()
    if case.kserve:
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        assert case.fragment in body["error"], body
        return
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["type"] == case.kind, error
    if case.code is not None:
        assert error["code"] == case.code, error
    assert case.fragment in error["message"], error
    assert r.headers["x-request-id"]


def test_no_answer_to_a_refused_origin_carries_cors_headers(server: ThreadedServer) -> None:
    evil = {"origin": "http://evil.example"}
    r = httpx.options(
        f"{server.url}/v1/chat/completions",
        headers={**evil, "access-control-request-method": "POST"},
    )
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{server.url}/v1/models", headers={**AUTH, **evil})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # the listed origin is let in, preflight and request
    allowed = {"origin": ALLOWED_ORIGIN}
    r = httpx.options(
        f"{server.url}/v1/chat/completions",
        headers={
            **allowed,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    r = httpx.post(f"{server.url}/v1/chat/completions", json=GOOD_CHAT, headers={**AUTH, **allowed})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in r.headers["access-control-expose-headers"]
    # a 401 is readable by the listed page (CORS sits outside the key check)
    r = httpx.get(f"{server.url}/v1/models", headers=allowed)
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_same_origin_and_loopback_hosts_pass(server: ThreadedServer) -> None:
    port = server.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "[::1]:9999"):
        r = httpx.get(f"{server.url}/v1/models", headers={**AUTH, "host": host})
        assert r.status_code == 200, (host, r.text)
    same = {"origin": f"http://localhost:{port}", "host": f"localhost:{port}"}
    r = httpx.post(f"{server.url}/v1/infer/echo", json={"args": ["x"]}, headers={**AUTH, **same})
    assert r.status_code == 200


def _raw(server: ThreadedServer, head: bytes, body: bytes = b"", wait_s: float = 10.0) -> bytes:
    """Send ``head`` (+ ``body``) on a socket of its own; what comes back within ``wait_s``."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(head + body)
        received = b""
        deadline = time.monotonic() + wait_s
        while b"\r\n\r\n" not in received and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_an_over_limit_body_is_refused_before_it_is_read(server: ThreadedServer) -> None:
    """1 GB announced, a few bytes sent, the rest never: the 413 comes at once."""
    started = time.monotonic()
    answer = _raw(
        server,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {KEY}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
        b'{"model": ',
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 3


def test_a_chunked_body_is_cut_off_at_the_limit(server: ThreadedServer) -> None:
    """No length announced: the 413 comes once the limit is passed, the stream still open."""
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 65536 + 2))
    answer = _raw(
        server,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {KEY}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunks,  # and no terminating chunk: the body never ends
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1, 2"])
def test_a_broken_content_length_is_refused_by_the_parser(
    server: ThreadedServer, length: bytes
) -> None:
    answer = _raw(
        server,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
        + length
        + b"\r\n\r\n",
        b"{}",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_oversized_headers_are_refused_by_the_parser(server: ThreadedServer) -> None:
    answer = _raw(
        server,
        b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        + b"a" * (256 * 1024)
        + b"\r\n\r\n",
    )
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")) or answer == b"", answer[:100]


def test_the_server_still_serves_after_the_battery(server: ThreadedServer) -> None:
    for case in CASES:  # once more, in one go, in case order matters
        send(server, case)
    r = httpx.post(f"{server.url}/v1/chat/completions", json=GOOD_CHAT, headers=AUTH, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
    r = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": EMBED, "input": ["a", "b"]}, headers=AUTH
    )
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        content=multipart({"model": ASR}, tone_wav(0.5)),
        headers={**AUTH, **FORM},
        timeout=60,
    )
    assert r.status_code == 200 and "text" in r.json()
    r = httpx.post(f"{server.url}/v1/infer/echo", json={"args": ["ok"]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["text"] == "ok"
    health = httpx.get(f"{server.url}/health", headers=AUTH).json()
    assert health["status"] == "ok"
    for name, model in health["models"].items():
        assert model["restarts"] == 0, name
        assert all(w["error"] is None for w in model["workers"]), name
