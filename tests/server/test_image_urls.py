"""``image_url`` handling: data: URLs, the bomb guard, and the remote-fetch fence.

No test here sends traffic off this machine, even with a broken guard: private and
link-local addresses come from a stubbed resolver, and every fetch goes through a
transport that can reach nothing but the 127.0.0.1 server the test started.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from localinfer.errors import InvalidRequest
from localinfer.server.image_urls import (
    IPAddress,
    RemoteGuard,
    decode_data_url,
    fetch_image,
    is_public_address,
    load_image_url,
)

Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.anyio
LOOPBACK = ipaddress.ip_address("127.0.0.1")


@dataclass
class Limits:
    remote_images: bool = True
    max_image_bytes: int = 64 * 1024
    max_image_pixels: int = 1_000_000
    max_image_side: int = 64
    remote_image_timeout_s: float = 2.0
    remote_image_max_redirects: int = 2


def png(size: tuple[int, int] = (20, 10), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# -- data: URLs and decoding -----------------------------------------------------------------


async def test_a_data_url_decodes_and_is_resized() -> None:
    picture = await load_image_url(data_url(png((200, 50))), Limits())
    assert picture.mode == "RGB" and picture.size == (64, 16)


async def test_detail_low_makes_a_smaller_image_and_unknown_details_are_refused() -> None:
    url = data_url(png((2000, 1000)))
    limits = Limits(max_image_side=1024, max_image_pixels=10_000_000)
    assert (await load_image_url(url, limits, detail="high")).size == (1024, 512)
    assert (await load_image_url(url, limits, detail="low")).size == (512, 256)
    with pytest.raises(InvalidRequest, match="detail must be 'auto', 'low' or 'high'"):
        await load_image_url(url, limits, detail="ultra")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,!!not*base64", "not valid base64"),
        ("data:image/png;base64", "no ','"),
        ("data:text/html;base64,PGI+", "is not an image"),
        ("data:image/png;base64,", "is empty"),
        (data_url(b"\0" * 70_000), "larger than 65,536 bytes"),
        (data_url(b"this is not an image at all"), "could not be read"),
        (data_url(png()[:40]), "could not be"),
        (data_url(png_claiming(100_000, 100_000)), "decompression bomb"),
        ("file:///etc/passwd", "file: image URLs are never read"),
        ("ftp://example.com/a.png", "not 'ftp'"),
    ],
)
async def test_bad_images_are_refused_saying_why(url: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as error:
        await load_image_url(url, Limits())
    assert error.value.param == "messages"


async def test_remote_urls_are_off_unless_turned_on() -> None:
    never = RemoteGuard(_unreachable_resolver, lambda a: True, _NoNetwork())
    with pytest.raises(InvalidRequest, match="remote image URLs are turned off"):
        await load_image_url("https://example.com/a.png", Limits(remote_images=False), guard=never)


def test_data_url_byte_limit_is_checked_before_decoding() -> None:
    with pytest.raises(InvalidRequest, match="larger than"):
        decode_data_url("data:image/png;base64," + "A" * 10_000, 1024)


# -- the address guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "127.8.8.8",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_not_allowed(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


class _NoNetwork(httpx.AsyncBaseTransport):
    """A transport that fails the test if anything tries to connect."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the guard let a request through to {request.url}")


async def _unreachable_resolver(host: str, port: int) -> list[str]:
    raise AssertionError("nothing should be resolved")


def stub_resolver(table: dict[str, list[str]]) -> object:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["127.0.0.1"],
        ["fe80::1%2"],
        ["93.184.216.34", "192.168.0.2"],
    ],
)
async def test_a_host_resolving_to_a_private_address_is_refused_before_connecting(
    addresses: list[str],
) -> None:
    guard = RemoteGuard(
        stub_resolver({"images.example": addresses}), is_public_address, _NoNetwork()
    )  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="non-public address"):
        await fetch_image("http://images.example/cat.png", Limits(), guard=guard)


# -- fetches from a server the test starts on 127.0.0.1 ----------------------------------------


class _LoopbackOnly(httpx.AsyncBaseTransport):
    """Reaches 127.0.0.1 and nothing else, whatever the guard decided."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        assert request.url.host == "127.0.0.1", f"a request escaped to {request.url}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
async def image_server() -> AsyncIterator[int]:
    """Serves /cat.png, /big, /slow, /loop (redirects to itself), /away (to a private host)."""
    body = png()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            host = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"host:")
            )
            if path == "/cat.png":
                answer = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                answer += b"Content-Length: %d\r\nX-Host: %s\r\n\r\n" % (len(body), host.encode())
                writer.write(answer + body)
            elif path == "/big":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(20):
                    writer.write(b"%x\r\n%s\r\n" % (8192, b"\0" * 8192))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            elif path == "/slow":
                await asyncio.sleep(5)
            elif path == "/loop":
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
            elif path == "/away":
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: http://internal.example/secret\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
            elif path == "/to-file":
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def loopback_guard() -> tuple[RemoteGuard, _LoopbackOnly]:
    """The real guard, plus 127.0.0.1 for the test's own server; names from a stub."""
    transport = _LoopbackOnly()

    def allowed(address: IPAddress) -> bool:
        return address == LOOPBACK or is_public_address(address)

    resolver = stub_resolver({"images.test": ["127.0.0.1"], "internal.example": ["10.1.2.3"]})
    return RemoteGuard(resolver, allowed, transport), transport  # type: ignore[arg-type]


async def test_a_remote_image_is_fetched_from_the_checked_address(image_server: int) -> None:
    guard, transport = loopback_guard()
    picture = await load_image_url(
        f"http://images.test:{image_server}/cat.png", Limits(), guard=guard
    )
    assert picture.size == (20, 10)
    assert transport.hosts == ["127.0.0.1"]  # pinned to the address that was checked


@pytest.mark.parametrize(
    ("path", "limits", "message"),
    [
        ("/big", Limits(), "larger than 65,536 bytes"),
        ("/slow", Limits(remote_image_timeout_s=0.3), "did not arrive within 0.3 s"),
        ("/loop", Limits(), "redirected more than 2 times"),
        ("/away", Limits(), "'internal.example' resolves to 10.1.2.3"),
        ("/to-file", Limits(), "only http"),
        ("/missing", Limits(), "answered HTTP 404"),
    ],
)
async def test_remote_fetch_limits(
    image_server: int, path: str, limits: Limits, message: str
) -> None:
    guard, transport = loopback_guard()
    with pytest.raises(InvalidRequest, match=message):
        await fetch_image(f"http://images.test:{image_server}{path}", limits, guard=guard)
    assert set(transport.hosts) <= {"127.0.0.1"}


async def test_no_redirects_allowed_means_none_followed(image_server: int) -> None:
    guard, _ = loopback_guard()
    with pytest.raises(InvalidRequest, match="redirected more than 0 times"):
        await fetch_image(
            f"http://images.test:{image_server}/loop",
            replace(Limits(), remote_image_max_redirects=0),
            guard=guard,
        )
