"""The connection cap: at most ``max_connections`` open client connections.

hypercorn has no such bound (one client could hold thousands of idle sockets). Its TCP
server (both backends) is given a subclass that counts connections; one past the cap
reads what the client sent (briefly, so that closing does not reset the connection
before the client reads the answer), answers 503 in the OpenAI error shape with
``Retry-After`` and closes. Counts are in ``/metrics`` and ``/v1/stats``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from localinfer.errors import TooManyConnections
from localinfer.server.refusals import raw_response

logger = logging.getLogger(__name__)

#: the config attribute that carries a server's :class:`ConnectionLimit`
CONFIG_ATTRIBUTE = "connection_limit"
#: how long a refused connection may take to send its request before the answer
_REFUSAL_READ_S = 0.5


class ConnectionLimit:
    """Open connections, against a cap (``None``: no cap, only counted)."""

    def __init__(self, max_connections: int | None):
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self.accepted = 0

    def acquire(self) -> bool:
        if self.max_connections is not None and self.open >= self.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                logger.warning(
                    "refused a connection: %d open, max_connections is %d (%d refused so far)",
                    self.open,
                    self.max_connections,
                    self.refused,
                )
            return False
        self.open += 1
        self.accepted += 1
        return True

    def release(self) -> None:
        self.open -= 1

    def refusal(self) -> bytes:
        return raw_response(
            TooManyConnections(
                f"the server has {self.open} connections open, its max_connections; "
                "close idle ones or retry later"
            )
        )

    def snapshot(self) -> dict[str, int | None]:
        return {
            "open": self.open,
            "max": self.max_connections,
            "accepted": self.accepted,
            "refused": self.refused,
        }


def install() -> None:
    """Count connections in hypercorn's TCP servers (once per process; only servers whose
    config carries a :class:`ConnectionLimit` are counted)."""
    from hypercorn.asyncio import run as asyncio_run

    _count_in(asyncio_run, _refuse_asyncio)
    try:
        from hypercorn.trio import run as trio_run
    except ImportError:
        return
    _count_in(trio_run, _refuse_trio)


Refuse = Callable[[Any, ConnectionLimit], Awaitable[None]]


def _count_in(module: ModuleType, refuse: Refuse) -> None:
    """Replace ``module.TCPServer`` with a subclass that counts its connections."""
    base: Any = getattr(module, "TCPServer")  # noqa: B009 - not exported
    if getattr(base, "localinfer_counted", False):
        return

    class CountedTCPServer(base):  # type: ignore[misc]
        localinfer_counted = True
        _limit: ConnectionLimit | None = None

        async def run(self) -> None:
            limit: ConnectionLimit | None = getattr(self.config, CONFIG_ATTRIBUTE, None)
            if limit is None:
                await super().run()
            elif limit.acquire():
                self._limit = limit
                try:
                    await super().run()
                finally:
                    self._release()
            else:
                await refuse(self, limit)

        # run() may outlast the connection by up to keep_alive_timeout (hypercorn's task
        # group waits for its idle timer): the count ends when either side has closed
        async def _read_data(self) -> None:
            try:
                await super()._read_data()
            finally:
                self._release()

        async def _close(self) -> None:
            self._release()
            await super()._close()

        def _release(self) -> None:
            if self._limit is not None:
                self._limit.release()
                self._limit = None

    setattr(module, "TCPServer", CountedTCPServer)  # noqa: B010


async def _refuse_asyncio(server: Any, limit: ConnectionLimit) -> None:
    import asyncio

    reader: asyncio.StreamReader = server.reader
    writer: asyncio.StreamWriter = server.writer
    try:
        if _speaks_http1(writer.get_extra_info("ssl_object")):
            try:
                await asyncio.wait_for(reader.read(65536), _REFUSAL_READ_S)
            except TimeoutError:
                pass
            writer.write(limit.refusal())
            await writer.drain()
    except (OSError, RuntimeError):
        pass
    finally:
        writer.close()


async def _refuse_trio(server: Any, limit: ConnectionLimit) -> None:
    import trio

    stream = server.stream
    try:
        alpn = getattr(stream, "selected_alpn_protocol", None)
        if alpn is not None:
            with trio.move_on_after(_REFUSAL_READ_S):
                await stream.do_handshake()
        if alpn is None or alpn() != "h2":
            with trio.move_on_after(_REFUSAL_READ_S):
                await stream.receive_some(65536)
            await stream.send_all(limit.refusal())
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


def _speaks_http1(ssl_object: Any) -> bool:
    """An HTTP/2 client (chosen by ALPN) gets no HTTP/1.1 answer, only the close."""
    return ssl_object is None or ssl_object.selected_alpn_protocol() != "h2"
