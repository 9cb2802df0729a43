"""Running the app on hypercorn, in a loop of its own or in the caller's running loop."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from localinfer.config import Settings
from localinfer.errors import ConfigurationError
from localinfer.runtime.loop import running_backend
from localinfer.server import connections, refusals
from localinfer.server.connections import ConnectionLimit
from localinfer.server.middleware.header_limits import HeaderLimits

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_is_safe(settings: Settings) -> None:
    """Refuse to expose models beyond this machine without an API key, or TLS files that
    are not there."""
    if (settings.certfile is None) != (settings.keyfile is None):
        raise ConfigurationError("TLS needs both --certfile and --keyfile")
    for path in (settings.certfile, settings.keyfile):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"TLS file {path} does not exist or is not a file")
    if settings.certfile is not None and settings.keyfile is not None:
        try:  # hypercorn would only fail once serving: say which file is wrong now
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.certfile, settings.keyfile
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"cannot use the TLS certificate {settings.certfile} with the key "
                f"{settings.keyfile}: {exc}"
            ) from exc
    if is_loopback(settings.host):
        return
    if not settings.api_key_value:
        raise ConfigurationError(
            f"refusing to listen on {settings.host}: that address is reachable from other "
            "machines, and no API key is set. Set one with --api-key or LOCALINFER_API_KEY, "
            "or bind 127.0.0.1."
        )


def warn_if_clear_text(settings: Settings) -> None:
    """A non-loopback bind without TLS: the key crosses the network in clear."""
    if not is_loopback(settings.host) and settings.certfile is None:
        logger.warning(
            "listening on %s without TLS: the API key and every prompt and answer travel "
            "in clear over the network; pass --certfile and --keyfile to encrypt them",
            settings.host,
        )


def open_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket; ``reuse_port``: shared with other processes of this user that
    bind the same address so (``SO_REUSEPORT``: the kernel spreads connections over them)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        sock = socket.create_server(
            (host.strip("[]"), port), family=family, backlog=1024, reuse_port=reuse_port
        )
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


#: seconds hypercorn keeps connections open past the drain deadline, for the last replies
DRAIN_REPLY_MARGIN_S = 1.0


class ServerConfig(Config):
    """hypercorn's config, with what localinfer's additions to it read (see
    :mod:`.connections` and :mod:`.refusals`)."""

    connection_limit: ConnectionLimit | None = None
    localinfer_refusals: bool = True


def hypercorn_config(
    sock: socket.socket, settings: Settings, limit: ConnectionLimit | None = None
) -> ServerConfig:
    config = ServerConfig()
    # hypercorn closes the descriptor it is given: hand it a duplicate, keep ours
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.accesslog = None
    # the registry's drain answers what is left at drain_timeout_s; the margin lets those
    # 503s reach their clients before hypercorn cancels whatever is still open
    config.graceful_timeout = settings.drain_timeout_s + DRAIN_REPLY_MARGIN_S
    # hypercorn's idle timer runs from a connection's start (and from the end of each
    # answer) until a request's headers are complete: it is the header timeout, and the
    # keep-alive timeout. ``read_timeout`` stays unset: it would cut a long streamed
    # answer whose client sends nothing meanwhile. Slow bodies: bodies.py (408).
    config.keep_alive_timeout = settings.header_timeout_s
    # header limits: exact ones (431, OpenAI shape) in the app (middleware/header_limits);
    # hypercorn's buffer bound above them refuses what is larger still (431, see refusals)
    limits = HeaderLimits.for_settings(settings)
    config.h11_max_incomplete_size = limits.incomplete_bytes
    config.h2_max_header_list_size = limits.incomplete_bytes
    config.connection_limit = limit
    if settings.certfile is not None and settings.keyfile is not None:
        config.certfile = str(settings.certfile)
        config.keyfile = str(settings.keyfile)
    return config


@dataclass(frozen=True)
class BoundAddress:
    host: str
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


async def serve(
    app: Starlette,
    settings: Settings,
    *,
    sock: socket.socket | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    lifespan: bool = True,
) -> None:
    """Serve until ``shutdown_trigger`` returns (default: SIGINT/SIGTERM); ``lifespan``:
    whether the server runs the app's startup and shutdown (``False``: another server
    runs them, Ray Serve's for an ingress replica: see :mod:`localinfer.ray.direct`)."""
    check_bind_is_safe(settings)
    warn_if_clear_text(settings)
    sock = sock or open_socket(settings.host, settings.port)
    trigger = _then_drain(app, sock, shutdown_trigger or _until_signal)
    limit = getattr(app.state, "connections", None)
    config = hypercorn_config(sock, settings, limit)
    connections.install()
    refusals.install()
    host, port = sock.getsockname()[:2]
    logger.info("listening on %s", BoundAddress(host, port, config.ssl_enabled).url)
    served: ASGIApp = app if lifespan else WithoutLifespan(app)
    try:
        if running_backend() == "trio":
            from hypercorn.trio import serve as trio_serve

            await trio_serve(served, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
        else:
            from hypercorn.asyncio import serve as asyncio_serve

            await asyncio_serve(served, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
    finally:
        sock.close()


class WithoutLifespan:
    """``app`` to a server that must not start or stop it: its lifespan messages are
    answered at once, everything else goes to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


def _then_drain(
    app: Starlette, sock: socket.socket, trigger: Callable[[], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """``trigger``, then the start of a graceful drain.

    New connections are refused at once (hypercorn closes its own duplicate of the
    listening socket right after; the kernel stops accepting when both are closed). The
    models stop taking jobs: requests still arriving on open connections get 503, queued
    and running ones finish within ``drain_timeout_s`` or are answered 503 then.
    Meanwhile hypercorn waits for open connections (its graceful timeout), then the
    lifespan shutdown stops the workers.
    """

    async def trigger_then_drain() -> None:
        await trigger()
        sock.close()
        registry = getattr(app.state, "registry", None)
        if registry is not None:
            registry.begin_drain()

    return trigger_then_drain


async def _until_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s, draining", signal.Signals(signum).name)
            return


@asynccontextmanager
async def serving(
    app: Starlette, settings: Settings, *, reuse_port: bool = False, lifespan: bool = True
) -> AsyncIterator[BoundAddress]:
    """Serve ``app`` in the current loop for the duration of the block (port 0: a free one;
    ``reuse_port``: see :func:`open_socket`; ``lifespan``: see :func:`serve`).

    However the block ends, the server shuts down gracefully: cancelled mid-request
    (an interrupted notebook cell), hypercorn's serve would die before the app's shutdown
    ran and leave models loaded, so it runs shielded and stops through its shutdown
    trigger, bounded by hypercorn's graceful timeout and the registry's drain timeout.
    """
    sock = open_socket(settings.host, settings.port, reuse_port=reuse_port)
    host, port = sock.getsockname()[:2]
    stop = anyio.Event()

    async def run() -> None:
        with anyio.CancelScope(shield=True):
            await serve(app, settings, sock=sock, shutdown_trigger=stop.wait, lifespan=lifespan)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield BoundAddress(host, port, settings.certfile is not None)
        finally:
            stop.set()


def run(app: Starlette, settings: Settings) -> None:
    """Block serving ``app`` in a new event loop of the configured kind."""
    anyio.run(serve, app, settings, backend=settings.loop)
