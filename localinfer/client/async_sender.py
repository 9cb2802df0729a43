"""How :class:`~localinfer.Client` sends: one ``httpx.AsyncClient``, flows run with
``await``, streamed responses opened with their error status raised first.

Every decision stays in :class:`~localinfer.client._base.BaseClient`; the async calls
(:mod:`.async_media`, :mod:`.async_client`) stand on this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx

from localinfer import errors as e
from localinfer.client import _core as core
from localinfer.client._base import BaseClient, Flow, Send, T
from localinfer.client.closing import AsyncClosing
from localinfer.client.errors import CONNECTION_ERROR


class AsyncSender(AsyncClosing, BaseClient):
    """A :class:`BaseClient` that sends with ``await``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, send: Send) -> httpx.Response:
        with core.transport_errors(self.base_url):
            response = await self._http.request(send.method, send.path, **send.options)  # type: ignore[arg-type]
        core.check(response)
        return response

    async def _run(self, flow: Flow[T]) -> T:
        """Send each request ``flow`` yields, until it returns its result."""
        try:
            send = next(flow)
            while True:
                send = flow.send(await self._send(send))
        except StopIteration as stop:
            result: T = stop.value
            return result

    @asynccontextmanager
    async def _streamed(self, send: Send) -> AsyncIterator[httpx.Response]:
        """A response read as it comes; an error status raised first."""
        with core.transport_errors(self.base_url):
            async with self._http.stream(send.method, send.path, **send.options) as reply:  # type: ignore[arg-type]
                if reply.is_error:
                    await reply.aread()
                    core.check(reply)
                yield reply

    async def ready(self) -> bool:
        with core.transport_errors(self.base_url):
            response = await self._http.get("/ready")
        return response.status_code == 200

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every model has loaded (a server that is still starting is waited for)."""
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    if await self.ready():
                        return
                except e.LocalInferError as exc:
                    if exc.code != CONNECTION_ERROR:
                        raise
                await anyio.sleep(0.05)
