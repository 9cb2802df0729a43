"""``localinfer.Server``: the embedded HTTP server with its clients.

The server itself (:class:`~localinfer.server.embedded.EmbeddedServer`) lives in the
server layer and knows nothing of the clients; this face adds them, so imports keep
pointing down (faces → server). Made for Jupyter::

    async with localinfer.Server(models=["all-minilm"]) as server:
        client = server.client()
        await client.embed(["hello"])
"""

from __future__ import annotations

from localinfer.client import Client, SyncClient
from localinfer.server.embedded import EmbeddedServer


class Server(EmbeddedServer):
    """An OpenAI-compatible server running in the caller's event loop, with clients."""

    def client(self, *, timeout: float = 300.0) -> Client:
        """An async client of this server (with its API key, if any); closed when it stops."""
        client = Client(self.url, self.settings.api_key_value, timeout=timeout)
        self.close_with_server(client)
        return client

    def sync_client(self, *, timeout: float = 300.0) -> SyncClient:
        """A blocking client, for other threads: called on this loop's thread it raises
        instead of blocking the loop that would answer it."""
        client = SyncClient(self.url, self.settings.api_key_value, timeout=timeout)
        client.server_loop = self.loop
        return client
