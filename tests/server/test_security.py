"""Safe by default: the Host check, cross-site requests, CORS, the API key, slow senders,
and the OpenAPI document the fuzzer reads.

The battery of bad inputs is in ``test_hostile_input.py``; the fuzzer in ``test_fuzz.py``.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from localinfer.config import Settings, load_settings
from localinfer.server import openapi
from localinfer.server.app import create_app
from localinfer.server.middleware import AllowedHosts, HeaderLimits, same_origin, split_host
from tests import models
from tests.support import ThreadedServer, define

# -- the Host header (DNS rebinding) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:8000", ("localhost", 8000)),
        ("LOCALHOST.", ("localhost", None)),
        ("[::1]:80", ("::1", 80)),
        ("::1", ("::1", None)),
        ("box.lan", ("box.lan", None)),
        ("evil.example:http", ("", None)),
        ("a b", ("", None)),
        ("user@host", ("", None)),
        ("", ("", None)),
    ],
)
def test_split_host(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host(value) == expected


def test_a_loopback_bind_answers_loopback_names_and_its_own_address_only() -> None:
    allowed = AllowedHosts.for_bind("127.0.0.1", None)
    for host in ("127.0.0.1:8000", "localhost", "localhost:1234", "[::1]:8000", "127.0.0.2"):
        assert allowed.allows(host), host
    for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "192.168.1.5", ""):
        assert not allowed.allows(host), host
    assert AllowedHosts.for_bind("::1", None).allows("[::1]:9")


def test_a_lan_bind_answers_any_host_unless_allowed_hosts_says_otherwise() -> None:
    assert AllowedHosts.for_bind("0.0.0.0", None).any
    assert AllowedHosts.for_bind("192.168.1.5", None).any
    narrowed = AllowedHosts.for_bind("0.0.0.0", ["box.lan", "*.corp.example", "other:9000"])
    for host in ("box.lan:8000", "a.corp.example", "other:9000", "localhost:8000", "0.0.0.0"):
        assert narrowed.allows(host), host
    for host in ("evil.example", "corp.example", "other:9001", "box.lan.evil.example"):
        assert not narrowed.allows(host), host
    assert AllowedHosts.for_bind("127.0.0.1", ["*"]).any


def test_settings_read_lists_from_flags_environment_and_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    assert load_settings(allowed_hosts="a.lan, b.lan", cors_origins="http://x:1").allowed_hosts == [
        "a.lan",
        "b.lan",
    ]
    monkeypatch.setenv("LOCALINFER_CORS_ORIGINS", '["http://a:1", "http://b:2"]')
    monkeypatch.setenv("LOCALINFER_ALLOWED_HOSTS", "*")
    settings = Settings()
    assert settings.cors_origins == ["http://a:1", "http://b:2"]
    assert settings.allowed_hosts == ["*"]
    monkeypatch.delenv("LOCALINFER_CORS_ORIGINS")
    monkeypatch.delenv("LOCALINFER_ALLOWED_HOSTS")
    config = tmp_path / "config.toml"
    config.write_text('allowed_hosts = ["box.lan"]\nbody_timeout_s = 5\nheader_timeout_s = 7\n')
    monkeypatch.setenv("LOCALINFER_CONFIG", str(config))
    settings = Settings()
    assert (settings.allowed_hosts, settings.body_timeout_s, settings.header_timeout_s) == (
        ["box.lan"],
        5,
        7,
    )


def test_the_cli_takes_allowed_hosts_and_cors_origins() -> None:
    from localinfer.cli.main import build_parser

    args = build_parser().parse_args(
        ["serve", "--allowed-hosts", "box.lan", "--cors-origins", "http://a:1,http://b:2"]
    )
    assert (args.allowed_hosts, args.cors_origins) == ("box.lan", "http://a:1,http://b:2")


async def _get(app: Any, path: str, base_url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as c:
        return await c.get(path, **kwargs)


@pytest.mark.anyio
async def test_asgi_test_clients_name_localhost_or_allow_their_host() -> None:
    """httpx's ASGITransport sends ``Host: testserver`` unless told otherwise: a test app
    created for 127.0.0.1 refuses it like any other foreign name."""
    app = create_app([], Settings(port=0))
    refused = await _get(app, "/openapi.json", "http://testserver")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "host_not_allowed"
    assert (await _get(app, "/openapi.json", "http://localhost")).status_code == 200
    test_app = create_app([], Settings(port=0, allowed_hosts=["testserver"]))
    assert (await _get(test_app, "/openapi.json", "http://testserver")).status_code == 200


# -- cross-site requests and CORS --------------------------------------------------------------


def test_same_origin() -> None:
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("http://localhost", "localhost:80")
    assert same_origin("https://box.lan", "box.lan:443")
    assert not same_origin("http://evil.example", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:3000", "127.0.0.1:8000")
    assert not same_origin("null", "127.0.0.1:8000")
    assert not same_origin("file://", "127.0.0.1:8000")
    assert not same_origin("http://[bad", "127.0.0.1:8000")


@pytest.mark.anyio
async def test_cross_site_writes_are_refused_reads_are_not() -> None:
    app = create_app([], Settings(port=0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        evil = {"origin": "http://evil.example"}
        r = await client.post("/v1/models/x/load", headers=evil)
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
        r = await client.delete("/v1/downloads/x", headers={"origin": "null"})
        assert r.status_code == 403
        # reading passes (the browser keeps the answer from the page: no CORS header)
        r = await client.get("/openapi.json", headers=evil)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        # with CORS off a preflight is just an OPTIONS the routes do not answer
        r = await client.options(
            "/v1/chat/completions", headers={**evil, "access-control-request-method": "POST"}
        )
        assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.anyio
async def test_cors_refusals_name_what_was_refused() -> None:
    app = create_app([], Settings(port=0, cors_origins=["http://app.example"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        listed = {"origin": "http://app.example"}
        r = await client.options(
            "/v1/embeddings", headers={**listed, "access-control-request-method": "PUT"}
        )
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "cors_preflight_refused"
        assert "method" in r.json()["error"]["message"]
        r = await client.options(
            "/v1/embeddings", headers={**listed, "access-control-request-method": "POST"}
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = await client.options(
            "/v1/embeddings",
            headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
        )
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


# -- the API key ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_api_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key check goes through ``hmac.compare_digest`` (not ``==``): a spy sees each."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    app = create_app([], Settings(port=0, api_key="s3cret-key"))
    for headers, status in [
        ({"authorization": "Bearer wrong"}, 401),
        ({"x-api-key": "s3cret-ke"}, 401),
        ({"authorization": "Bearer s3cret-key"}, 200),
        ({"x-api-key": "s3cret-key"}, 200),
        ({"authorization": "Bearer s3cret-kéy".encode()}, 401),  # not ASCII: compared, refused
    ]:
        r = await _get(app, "/openapi.json", "http://localhost", headers=headers)
        assert r.status_code == status, headers
    assert [a for a, _ in calls] == [
        b"wrong",
        b"s3cret-ke",
        b"s3cret-key",
        b"s3cret-key",
        "s3cret-kéy".encode(),
    ]
    assert all(b == b"s3cret-key" for _, b in calls)
    r = await _get(app, "/openapi.json", "http://localhost")  # no key: nothing to compare
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert len(calls) == 5
    unicode_key = create_app([], Settings(port=0, api_key="clé-🔑"))
    r = await _get(
        unicode_key, "/openapi.json", "http://localhost", headers={"x-api-key": "clé-🔑".encode()}
    )
    assert r.status_code == 200


# -- the OpenAPI document -----------------------------------------------------------------------


def test_every_route_is_documented() -> None:
    app = create_app([], Settings(port=0))
    assert openapi.undocumented(app.routes) == []
    stale = set(openapi.OPERATIONS) - {
        (m, r.path) for r in app.routes for m in getattr(r, "methods", None) or ()
    }
    assert not stale, f"documented but not served: {stale}"


@pytest.mark.anyio
async def test_openapi_document_is_valid_complete_and_built_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    builds = 0
    build = openapi.build

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal builds
        builds += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(openapi, "build", counting)
    app = create_app([], Settings(port=0, api_key="k"))
    first = await _get(app, "/openapi.json", "http://localhost", headers={"x-api-key": "k"})
    again = await _get(app, "/openapi.json", "http://localhost", headers={"x-api-key": "k"})
    assert first.status_code == 200 and first.content == again.content and builds == 1
    doc = first.json()
    validator.validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert {"bearer", "apiKey"} <= set(doc["components"]["securitySchemes"])
    paths = doc["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/audio/transcriptions",
        "/v1/infer/{model}",
        "/v2/models/{name}/infer",
        "/v1/models/{model}/load",
        "/health",
        "/metrics",
    ):
        assert path in paths, path
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    error = chat["responses"]["default"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    assert set(doc["components"]["schemas"]["ErrorDetail"]["properties"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    form = paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    schema = form["multipart/form-data"]["schema"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert {"file", "model"} <= set(schema["required"])
    kserve = paths["/v2/models/{name}/infer"]["post"]["responses"]["default"]
    assert kserve["content"]["application/json"]["schema"]["$ref"].endswith("/KServeError")


def test_a_field_added_to_a_protocol_model_shows_in_the_document() -> None:
    """Schemas come from the models: nothing in openapi.py lists fields."""
    app = create_app([], Settings(port=0))
    doc = openapi.build(app.routes)
    request = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    from localinfer.server.protocol import ChatCompletionRequest

    assert set(ChatCompletionRequest.model_fields) == set(request)


# -- slow senders (slowloris) -------------------------------------------------------------------

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ThreadedServer]:
    with ThreadedServer(
        [define(models.Echo)], header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S
    ) as running:
        yield running


def _connect(server: ThreadedServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _answer_or_close(sock: socket.socket, trickle: bytes, every_s: float) -> tuple[bytes, float]:
    """Trickle one byte of ``trickle`` every ``every_s`` until the server answers or hangs up;
    what it sent and when (seconds from the start)."""
    started = time.monotonic()
    sock.setblocking(False)
    received = b""
    for byte in trickle:
        try:
            chunk = sock.recv(65536)
            if not chunk:
                break  # closed
            received += chunk
            if b"\r\n\r\n" in received:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        try:
            sock.send(bytes([byte]))
        except OSError:
            break
        time.sleep(every_s)
    else:
        raise AssertionError("the server let a trickling sender go on for the whole test")
    sock.setblocking(True)
    sock.settimeout(5)
    try:
        while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
    except OSError:
        pass
    return received, time.monotonic() - started


def test_slow_headers_are_cut_off_and_others_are_served_meanwhile(
    slow_server: ThreadedServer,
) -> None:
    sockets = [_connect(slow_server) for _ in range(20)]
    for sock in sockets:
        sock.sendall(b"POST /v1/infer/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    results: list[tuple[bytes, float]] = []

    def trickle(sock: socket.socket) -> None:
        results.append(_answer_or_close(sock, b"X-Slow: " + b"a" * 200, 0.1))

    threads = [threading.Thread(target=trickle, args=(s,)) for s in sockets]
    for thread in threads:
        thread.start()
    # meanwhile, everyone else is served at once
    r = httpx.post(f"{slow_server.url}/v1/infer/echo", json={"args": ["hi"]}, timeout=5)
    assert r.status_code == 200 and r.json()["text"] == "hi"
    for thread in threads:
        thread.join(30)
    for sock in sockets:
        sock.close()
    assert len(results) == 20
    for received, elapsed in results:
        assert received == b"", received[:100]  # closed without a word: no request yet
        assert elapsed < TIMEOUT_S + 1.5, elapsed


def test_an_idle_connection_is_closed_after_the_header_timeout(
    slow_server: ThreadedServer,
) -> None:
    with _connect(slow_server) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < TIMEOUT_S + 1.5


def test_a_slow_body_gets_408_and_others_are_served_meanwhile(
    slow_server: ThreadedServer,
) -> None:
    body = json.dumps({"args": ["x" * 100]}).encode()
    with _connect(slow_server) as sock:
        sock.sendall(
            b"POST /v1/infer/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        done: list[tuple[bytes, float]] = []
        thread = threading.Thread(target=lambda: done.append(_answer_or_close(sock, body, 0.1)))
        thread.start()
        r = httpx.post(f"{slow_server.url}/v1/infer/echo", json={"args": ["hi"]}, timeout=5)
        assert r.status_code == 200
        thread.join(30)
    received, elapsed = done[0]
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert elapsed < TIMEOUT_S + 1.5, elapsed
    head, _, payload = received.partition(b"\r\n\r\n")
    assert b"request_body_timeout" in payload or b"content-length" in head.lower()


def test_a_slow_multipart_upload_gets_408(slow_server: ThreadedServer) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nasr\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + b"\x00" * 200
        + b"\r\n--b--\r\n"
    )
    with _connect(slow_server) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        received, elapsed = _answer_or_close(sock, body, 0.1)
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert elapsed < TIMEOUT_S + 1.5


def test_a_body_sent_in_time_is_read_whole(slow_server: ThreadedServer) -> None:
    """The deadline is for the whole body, so a fast sender of many pieces is unaffected."""
    body = json.dumps({"args": ["y" * 50_000]}).encode()
    with _connect(slow_server) as sock:
        sock.sendall(
            b"POST /v1/infer/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for start in range(0, len(body), 1000):
            sock.sendall(body[start : start + 1000])
            time.sleep(0.005)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]


def test_hypercorn_gets_the_header_timeout_and_no_read_timeout() -> None:
    """``read_timeout`` would cut a long stream whose client sends nothing meanwhile."""
    import os

    from localinfer.server.runner import hypercorn_config, open_socket

    with open_socket("127.0.0.1", 0) as sock:
        config = hypercorn_config(sock, Settings(port=0, header_timeout_s=7.5))
        os.close(int(config.bind[0].removeprefix("fd://")))
    assert config.keep_alive_timeout == 7.5
    assert config.read_timeout is None
    assert config.h11_max_incomplete_size == HeaderLimits().incomplete_bytes
