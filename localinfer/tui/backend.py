"""Where the TUI's client comes from: a server somewhere, or one started in this loop.

The app only ever holds a :class:`~localinfer.client.Client`: the screens work the same
against a remote ``--url`` and against the local server that ``localinfer tui`` starts
(that one lives in ``launcher.py``, the only TUI module that may import the server).
"""

from __future__ import annotations

from typing import Protocol

from localinfer.client import Client


class Backend(Protocol):
    """Opens the client when the app starts; closes it (and anything behind it) at exit."""

    #: what the header shows: a URL, or "local server"
    description: str

    async def connect(self) -> Client: ...

    async def close(self) -> None: ...


class RemoteBackend:
    """A server that runs elsewhere (``--url``, else ``LOCALINFER_URL``, else :8000)."""

    def __init__(self, url: str | None = None, api_key: str | None = None):
        self._client = Client(url, api_key)
        self.description = self._client.base_url

    async def connect(self) -> Client:
        return self._client

    async def close(self) -> None:
        await self._client.aclose()


class ClientBackend:
    """A client someone else opened and will close (tests, a notebook's own server)."""

    def __init__(self, client: Client, description: str | None = None):
        self._client = client
        self.description = description or client.base_url

    async def connect(self) -> Client:
        return self._client

    async def close(self) -> None:
        pass
