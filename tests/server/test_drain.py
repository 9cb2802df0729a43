"""Shutdown with requests in flight: a graceful drain with a deadline, nothing dropped.

``localinfer serve`` stopped by SIGTERM, and the embedded ``Server.stop()``: running and
queued requests finish within ``drain_timeout_s``; new connections are refused; what is
still unanswered at the deadline gets a 503 body (an error event, for a stream that had
started). Every request gets a reply: none ends in a bare connection error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import localinfer
from tests import models
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


@contextmanager
def serve_process(
    *targets: str, drain_timeout_s: float
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``localinfer serve`` in a subprocess, ready; killed at the end if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "localinfer", "serve", *targets, "--port", "0", "--device", "cpu"],
        cwd=ROOT,
        env={
            **os.environ,
            "LOCALINFER_CONFIG": "/nonexistent.toml",
            "LOCALINFER_DRAIN_TIMEOUT_S": str(drain_timeout_s),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url, lines, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, "".join(lines)
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


class Replies:
    """Requests sent on connections of their own; every outcome kept."""

    def __init__(self, url: str):
        self.url = url
        self.responses: dict[str, httpx.Response] = {}
        self.streams: dict[str, list[str]] = {}
        self.errors: dict[str, BaseException] = {}

    async def post(self, tag: str, path: str, body: dict[str, Any]) -> None:
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
                self.responses[tag] = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            self.errors[tag] = exc

    async def stream(self, tag: str, path: str, body: dict[str, Any]) -> None:
        events = self.streams.setdefault(tag, [])
        try:
            async with (
                httpx.AsyncClient(base_url=self.url, timeout=30) as client,
                client.stream("POST", path, json=body) as r,
            ):
                self.responses[tag] = r
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[len("data: ") :])
        except httpx.HTTPError as exc:
            self.errors[tag] = exc

    async def stats(self, model: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url) as client:
            body: dict[str, Any] = (await client.get("/v1/stats")).json()["models"][model]
            return body

    async def wait_in_flight(self, model: str, count: int) -> None:
        async def arrived() -> bool:
            return (await self.stats(model))["in_flight"] >= count

        await wait_until(arrived, timeout=10)


def sleeper(seconds: float, tag: str) -> dict[str, Any]:
    return {"kwargs": {"seconds": seconds, "tag": tag}}


# -- localinfer serve, SIGTERM -------------------------------------------------------------


async def test_sigterm_drains_running_and_queued_requests_and_refuses_new_ones() -> None:
    with serve_process("tests.models:Sleeper", drain_timeout_s=10) as (url, process):
        replies = Replies(url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(replies.post, "running", "/v1/infer/sleeper", sleeper(1.0, "running"))
            await replies.wait_in_flight("sleeper", 1)
            for i in range(3):
                tg.start_soon(
                    replies.post, f"queued{i}", "/v1/infer/sleeper", sleeper(0.2, f"q{i}")
                )
            await replies.wait_in_flight("sleeper", 4)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await anyio.sleep(0.3)
            assert refuses_connections(url)  # new connections, while the drain goes on
            assert process.poll() is None
        assert replies.errors == {}
        assert {tag: r.status_code for tag, r in replies.responses.items()} == {
            "running": 200,
            "queued0": 200,
            "queued1": 200,
            "queued2": 200,
        }
        assert replies.responses["queued2"].json() == {"tag": "q2"}
        assert await anyio.to_thread.run_sync(process.wait, 10) == 0
        assert time.monotonic() - signalled < 5  # done when the work was, not at 10 s
        out = process.stdout.read() if process.stdout else ""
        assert "received SIGTERM, draining" in out


async def test_sigterm_past_the_deadline_answers_503_and_ends_streams_cleanly() -> None:
    targets = ("tests.models:Sleeper", "tests.models:Words")
    with serve_process(*targets, drain_timeout_s=1.0) as (url, process):
        replies = Replies(url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(replies.post, "stuck", "/v1/infer/sleeper", sleeper(6.0, "stuck"))
            await replies.wait_in_flight("sleeper", 1)
            for i in range(2):
                tg.start_soon(replies.post, f"queued{i}", "/v1/infer/sleeper", sleeper(0.1, "q"))
            words = {"kwargs": {"n": 100_000, "delay_s": 0.01}, "stream": True}
            tg.start_soon(replies.stream, "stream", "/v1/infer/words", words)
            await replies.wait_in_flight("sleeper", 3)
            await replies.wait_in_flight("words", 1)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
        answered_in = time.monotonic() - signalled
        assert 0.9 <= answered_in < 3.0
        assert replies.errors == {}  # every request got a reply, none a bare close
        for tag in ("stuck", "queued0", "queued1"):
            r = replies.responses[tag]
            assert r.status_code == 503, (tag, r.text)
            assert r.json()["error"]["code"] == "shutting_down"
        events = replies.streams["stream"]
        assert replies.responses["stream"].status_code == 200
        assert len(events) > 10 and events[0] == '"w0 "'
        assert json.loads(events[-1])["error"]["code"] == "shutting_down"
        assert "[DONE]" not in events
        # the process does not wait for the stuck call (6 s) to return
        assert await anyio.to_thread.run_sync(process.wait, 10) == 0
        assert time.monotonic() - signalled < 4.5


# -- the embedded Server -------------------------------------------------------------------


async def test_server_stop_drains_requests_in_flight() -> None:
    server = await localinfer.Server([models.Sleeper], device="cpu", drain_timeout_s=10).start()
    url = server.url
    replies = Replies(url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(replies.post, "running", "/v1/infer/sleeper", sleeper(0.6, "running"))
        await replies.wait_in_flight("sleeper", 1)
        for i in range(2):
            tg.start_soon(replies.post, f"queued{i}", "/v1/infer/sleeper", sleeper(0.1, f"q{i}"))
        await replies.wait_in_flight("sleeper", 3)
        tg.start_soon(server.stop)
        await anyio.sleep(0.2)
        assert refuses_connections(url)
    assert replies.errors == {}
    assert [replies.responses[t].json()["tag"] for t in ("running", "queued0", "queued1")] == [
        "running",
        "q0",
        "q1",
    ]


async def test_server_stop_past_the_deadline_answers_503() -> None:
    server = await localinfer.Server([models.Sleeper], device="cpu", drain_timeout_s=0.5).start()
    replies = Replies(server.url)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(replies.post, "stuck", "/v1/infer/sleeper", sleeper(3.0, "stuck"))
        await replies.wait_in_flight("sleeper", 1)
        tg.start_soon(replies.post, "queued", "/v1/infer/sleeper", sleeper(0.1, "queued"))
        await replies.wait_in_flight("sleeper", 2)
        await server.stop()
    assert replies.errors == {}
    for tag in ("stuck", "queued"):
        assert replies.responses[tag].status_code == 503
        assert replies.responses[tag].json()["error"]["code"] == "shutting_down"
    assert time.monotonic() - started < 2.5
