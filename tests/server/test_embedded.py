"""``localinfer.Server`` inside a running loop: across "cells", under interrupts, under trio."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

import localinfer
from localinfer.errors import ConfigurationError
from tests import models
from tests.support import wait_until


class Tracked:
    """Streams words slowly; records when its worker closes it."""

    name = "tracked"
    closed = threading.Event()

    def infer(self, n: int = 3, delay_s: float = 0.0) -> Iterator[str]:
        for i in range(n):
            time.sleep(delay_s)
            yield f"w{i} "

    def teardown(self) -> None:
        Tracked.closed.set()


def workers_alive(model: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"localinfer:{model}:")]


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


@pytest.fixture(autouse=True)
def reset() -> None:
    Tracked.closed.clear()


async def freed(url: str) -> None:
    """The models were closed in their threads, the threads ended, the port is closed."""
    assert Tracked.closed.is_set()
    await wait_until(lambda: not workers_alive("tracked"), timeout=5)
    assert not port_open(url)


@pytest.mark.anyio
async def test_block_serves_then_frees_the_models() -> None:
    async with localinfer.Server([Tracked], device="cpu") as server:
        url = server.url
        assert server.registry.ready and "tracked" in repr(server)
        client = server.client()
        assert await client.infer("tracked", 2) == "w0 w1 "
        with pytest.raises(RuntimeError, match="would block the event loop"):
            server.sync_client().models()  # on the loop's own thread: refused, not hung
    await freed(url)
    assert client._http.is_closed  # the clients it handed out are closed with it
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018


@pytest.mark.anyio
async def test_cancelling_the_block_mid_stream_frees_the_models() -> None:
    """A kernel interrupt cancels the cell's task: the same path."""
    url = ""
    with anyio.move_on_after(0.5) as scope:
        async with localinfer.Server([Tracked], device="cpu") as server:
            url = server.url
            async with server.client() as client:
                async for _ in client.infer_stream("tracked", 10_000, delay_s=0.01):
                    pass
    assert scope.cancelled_caught
    await freed(url)


def test_start_and_stop_from_separate_cells() -> None:
    """In Jupyter each cell is its own task on a loop that keeps running between them."""

    async def notebook() -> None:
        server = localinfer.Server({"slow": models.SlowLoader, "tracked": Tracked}, device="cpu")
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.create_task(heartbeat())
        started = time.perf_counter()
        await asyncio.create_task(server.start())  # cell 1: returns once the models loaded
        loading_s = time.perf_counter() - started
        assert loading_s >= models.SlowLoader.delay_s
        assert ticks >= 0.2 * loading_s / 0.01  # the loop kept running: the kernel stays live

        async def use() -> object:  # cell 2
            async with server.client() as client:
                return await client.infer("slow")

        assert await asyncio.create_task(use()) == "loaded"
        url = server.url
        await asyncio.create_task(server.stop())  # cell 3
        beating.cancel()
        await freed(url)

    asyncio.run(notebook())  # a plain asyncio loop: no nest_asyncio, no second loop
    assert not {"nest_asyncio", "nest_asyncio2"} & set(sys.modules)


def test_interrupting_start_gives_everything_back() -> None:
    async def notebook() -> None:
        server = localinfer.Server({"slow": models.SlowLoader, "tracked": Tracked}, device="cpu")
        cell = asyncio.create_task(server.start())
        await asyncio.sleep(0.1)  # loading
        cell.cancel()  # what the kernel does on an interrupt
        with pytest.raises(asyncio.CancelledError):
            await cell
        await wait_until(lambda: not workers_alive("slow") and not workers_alive("tracked"))
        with pytest.raises(RuntimeError, match="not running"):
            server.url  # noqa: B018

    asyncio.run(notebook())


@pytest.mark.anyio
async def test_a_model_that_cannot_load_fails_the_start() -> None:
    server = localinfer.Server([models.BrokenLoader, Tracked], device="cpu")
    with pytest.raises(ConfigurationError, match="broken-loader"):
        async with server:
            pass  # pragma: no cover
    await wait_until(lambda: not workers_alive("tracked"), timeout=5)


def test_clashing_names_and_unsafe_binds_fail_before_anything_starts() -> None:
    with pytest.raises(ConfigurationError, match="named 'echo'"):
        localinfer.Server([models.Echo(), models.Echo()])
    with pytest.raises(ConfigurationError, match="no API key"):
        localinfer.Server([models.Echo], host="0.0.0.0")


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_serves_under_trio() -> None:
    async with (
        localinfer.Server([Tracked], device="cpu") as server,
        server.client() as client,
    ):
        assert [item async for item in client.infer_stream("tracked", 2)] == ["w0 ", "w1 "]
        with pytest.raises(RuntimeError, match="asyncio"):
            await localinfer.Server([models.Echo], device="cpu").start()
    assert Tracked.closed.is_set()
