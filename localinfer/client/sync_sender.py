"""How :class:`~localinfer.SyncClient` sends: one ``httpx.Client``, flows run blocking,
streamed responses opened with their error status raised first; and the refusal to block
the event loop of a server that runs in this very process.

Every decision stays in :class:`~localinfer.client._base.BaseClient`; the blocking calls
(:mod:`.sync_media`, :mod:`.sync_client`) stand on this.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from localinfer import errors as e
from localinfer.client import _core as core
from localinfer.client._base import BaseClient, Flow, Send, T
from localinfer.client.closing import Closing
from localinfer.client.errors import CONNECTION_ERROR


class SyncSender(Closing, BaseClient):
    """A :class:`BaseClient` that sends blocking."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
            event_hooks={"request": [self._refuse_to_deadlock]},
        )
        #: the event loop serving ``base_url`` when that server runs in this process
        #: (``Server.sync_client()``): blocking that loop's thread would wait forever
        self.server_loop: object | None = None

    def _refuse_to_deadlock(self, request: httpx.Request) -> None:
        try:
            running: object | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.server_loop:
            raise RuntimeError(
                "this SyncClient would block the event loop its server runs in and wait "
                "forever: in a notebook or async code use server.client() and await it"
            )

    def close(self) -> None:
        self._http.close()

    def _send(self, send: Send) -> httpx.Response:
        with core.transport_errors(self.base_url):
            response = self._http.request(send.method, send.path, **send.options)  # type: ignore[arg-type]
        core.check(response)
        return response

    def _run(self, flow: Flow[T]) -> T:
        """Send each request ``flow`` yields, until it returns its result."""
        try:
            send = next(flow)
            while True:
                send = flow.send(self._send(send))
        except StopIteration as stop:
            result: T = stop.value
            return result

    @contextmanager
    def _streamed(self, send: Send) -> Iterator[httpx.Response]:
        """A response read as it comes; an error status raised first."""
        with (
            core.transport_errors(self.base_url),
            self._http.stream(send.method, send.path, **send.options) as reply,  # type: ignore[arg-type]
        ):
            if reply.is_error:
                reply.read()
                core.check(reply)
            yield reply

    def ready(self) -> bool:
        with core.transport_errors(self.base_url):
            return self._http.get("/ready").status_code == 200

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every model has loaded (a server that is still starting is waited for)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.ready():
                    return
            except e.LocalInferError as exc:
                if exc.code != CONNECTION_ERROR:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.base_url} was not ready within {timeout_s:g} s")
            time.sleep(0.05)
