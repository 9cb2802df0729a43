"""``image_url`` parts to pictures: ``data:`` always, ``http(s)`` only when the operator
allows it, ``file:`` never. Shared by the chat route and ``Engine.chat``.

A remote fetch is the one place a request makes this process open a connection, so it
is fenced in: the host is resolved here and every address it resolves to must be a
global one (no private, loopback, link-local, shared, reserved or multicast address);
the connection then goes to the checked address itself (DNS cannot answer differently
a second time), and every redirect is a new URL checked the same way. Bytes, time and
redirects are bounded. Each refusal is an ``InvalidRequest`` saying why.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote_to_bytes

import anyio
import anyio.to_thread

from localinfer.errors import InvalidRequest
from localinfer.handlers.images import decode_image

if TYPE_CHECKING:
    import httpx
    from PIL.Image import Image

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]
_PARAM = "messages"


class ImageSettings(Protocol):
    """The settings this module reads (``localinfer.config.Settings`` has them)."""

    remote_images: bool
    max_image_bytes: int
    max_image_pixels: int
    max_image_side: int
    remote_image_timeout_s: float
    remote_image_max_redirects: int


@dataclass(frozen=True)
class RemoteGuard:
    """How a fetch finds, vets and reaches addresses; tests swap in a stub resolver and a
    transport that can reach nothing but their own 127.0.0.1 servers."""

    resolve: Resolver
    allowed: Callable[[IPAddress], bool]
    transport: httpx.AsyncBaseTransport | None = None


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses (IPv4-mapped IPv6 judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(
            f"the image URL's host {host!r} could not be resolved ({exc})", param=_PARAM
        ) from None
    return [str(info[4][0]) for info in infos]


DEFAULT_GUARD = RemoteGuard(resolve_host, is_public_address)


#: the longer side of an image sent with OpenAI's ``detail: "low"``
LOW_DETAIL_SIDE = 512


async def load_image_url(
    url: str,
    settings: ImageSettings,
    *,
    detail: str | None = None,
    guard: RemoteGuard = DEFAULT_GUARD,
) -> Image:
    """The picture ``url`` names, decoded and resized in a worker thread.

    ``detail``: OpenAI's field; ``"low"`` resizes to :data:`LOW_DETAIL_SIDE` (fewer image
    tokens for models that tile large images), ``"high"`` / ``"auto"`` to
    ``max_image_side``.
    """
    if detail not in (None, "auto", "low", "high"):
        raise InvalidRequest(
            f"image_url.detail must be 'auto', 'low' or 'high', not {detail!r}", param=_PARAM
        )
    side = settings.max_image_side
    if detail == "low":
        side = min(side, LOW_DETAIL_SIDE)
    scheme = url.partition(":")[0].strip().lower()
    if scheme == "data":
        data = decode_data_url(url, settings.max_image_bytes)
    elif scheme in ("http", "https"):
        if not settings.remote_images:
            raise InvalidRequest(
                "remote image URLs are turned off on this server: send the image inline as a "
                "data: URL (the operator can allow http(s) images with remote_images)",
                param=_PARAM,
            )
        data = await fetch_image(url, settings, guard=guard)
    elif scheme == "file":
        raise InvalidRequest(
            "file: image URLs are never read: send the image inline as a data: URL",
            param=_PARAM,
        )
    else:
        raise InvalidRequest(
            f"image URLs must be data: (or http(s): where allowed), not {scheme or url[:20]!r}",
            param=_PARAM,
        )
    return await anyio.to_thread.run_sync(
        lambda: decode_image(data, max_pixels=settings.max_image_pixels, max_side=side)
    )


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:[<type>][;base64],<data>`` URL, at most ``max_bytes``."""
    header, comma, payload = url.partition(",")
    if not comma:
        raise InvalidRequest("the image data: URL has no ',' before its data", param=_PARAM)
    params = [part.strip().lower() for part in header[len("data:") :].split(";")]
    if params[0] and not params[0].startswith("image/"):
        raise InvalidRequest(f"a data: URL of type {params[0]!r} is not an image", param=_PARAM)
    # base64 grows bytes by 4/3: refuse by length before decoding anything
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise InvalidRequest(
            f"the image is larger than {max_bytes:,} bytes (max_image_bytes)", param=_PARAM
        )
    try:
        if "base64" in params[1:]:
            data = base64.b64decode(payload, validate=True)
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the image data: URL is not valid base64", param=_PARAM) from None
    if not data:
        raise InvalidRequest("the image data: URL is empty", param=_PARAM)
    if len(data) > max_bytes:
        raise InvalidRequest(
            f"the image is {len(data):,} bytes; at most {max_bytes:,} are accepted "
            "(max_image_bytes)",
            param=_PARAM,
        )
    return data


async def fetch_image(
    url: str, settings: ImageSettings, *, guard: RemoteGuard = DEFAULT_GUARD
) -> bytes:
    """GET ``url`` (following at most ``remote_image_max_redirects`` redirects) within the
    byte and time limits, connecting only to addresses the guard allows."""
    import httpx

    timeout = settings.remote_image_timeout_s
    try:
        with anyio.fail_after(timeout):
            async with httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=timeout, transport=guard.transport
            ) as client:
                for _ in range(settings.remote_image_max_redirects + 1):
                    response = await _send_checked(client, httpx.URL(url), guard)
                    try:
                        if response.is_redirect:
                            location = response.headers.get("location", "")
                            url = str(httpx.URL(url).join(location))
                            continue
                        return await _read_body(response, url, settings.max_image_bytes)
                    finally:
                        await response.aclose()
    except TimeoutError:
        raise InvalidRequest(
            f"the image at {url} did not arrive within {timeout:g} s", param=_PARAM
        ) from None
    except httpx.HTTPError as exc:
        raise InvalidRequest(
            f"the image at {url} could not be fetched: {exc}", param=_PARAM
        ) from None
    raise InvalidRequest(
        f"the image URL redirected more than {settings.remote_image_max_redirects} times",
        param=_PARAM,
    )


async def _send_checked(
    client: httpx.AsyncClient, url: httpx.URL, guard: RemoteGuard
) -> httpx.Response:
    """Send GET ``url`` to an address of its host that the guard allowed, after checking all."""
    if url.scheme not in ("http", "https"):
        raise InvalidRequest(
            f"the image URL led to a {url.scheme or 'relative'}: URL; only http(s) is followed",
            param=_PARAM,
        )
    host = url.host
    if not host:
        raise InvalidRequest("the image URL has no host", param=_PARAM)
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await guard.resolve(host, port)
    if not addresses:
        raise InvalidRequest(f"the image URL's host {host!r} resolves to nothing", param=_PARAM)
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if not guard.allowed(address):
            raise InvalidRequest(
                f"the image URL's host {host!r} resolves to {address}, a private, loopback, "
                "link-local or otherwise non-public address: refused",
                param=_PARAM,
            )
    pinned = url.copy_with(host=addresses[0].split("%")[0])
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    request = client.build_request(
        "GET", pinned, headers={"Host": url.netloc.decode("ascii")}, extensions=extensions
    )
    return await client.send(request, stream=True)


async def _read_body(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    if response.status_code != 200:
        raise InvalidRequest(
            f"the image at {url} answered HTTP {response.status_code}", param=_PARAM
        )
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise InvalidRequest(
            f"the image at {url} is {int(declared):,} bytes; at most {max_bytes:,} are "
            "accepted (max_image_bytes)",
            param=_PARAM,
        )
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise InvalidRequest(
                f"the image at {url} is larger than {max_bytes:,} bytes (max_image_bytes)",
                param=_PARAM,
            )
    return bytes(body)
