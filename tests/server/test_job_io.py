"""The job watch: deadlines and disconnects reach readers as events, fast jobs cost nothing."""

from __future__ import annotations

import gc
import json
import time
import weakref

import anyio
import pytest
from starlette.requests import ClientDisconnect

from localinfer.errors import RequestTimeout
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.server.job_io import (
    CONNECTION_WATCH_AFTER_S,
    WATCH_AFTER_S,
    JobReader,
    JobWatch,
)
from tests import models
from tests.support import define, running_server, wait_until

pytestmark = pytest.mark.anyio


async def test_a_job_done_before_the_check_is_never_followed() -> None:
    async with JobWatch() as watch:
        job = Job("x", model="m", request_id="r")
        reader = JobReader(job, 5.0, watch)
        job.deliver(Done(1))
        assert await reader.next() == Done(1)
        await anyio.sleep(WATCH_AFTER_S * 3)
        assert watch.following == 0


class _Request:
    """What the reader needs of a request: its ``receive`` (never called here)."""

    async def receive(self) -> dict[str, str]:
        await anyio.sleep_forever()
        raise AssertionError


async def test_the_watch_lets_go_of_a_job_its_reader_is_done_with() -> None:
    async with JobWatch() as watch:
        job = Job("x", model="m", request_id="r")
        reader = JobReader(job, 5.0, watch)
        job.deliver(Done(1))
        assert await reader.guarded(_Request(), reader.next) == Done(1)  # type: ignore[arg-type]
        streamed = Job("y", model="m", request_id="s")
        stream_reader = JobReader(streamed, 5.0, watch)
        streamed.deliver(Chunk("a"))
        assert await stream_reader.guarded(_Request(), stream_reader.next) == Chunk("a")  # type: ignore[arg-type]
        alive = [weakref.ref(job), weakref.ref(streamed)]
        del job, reader
        gc.collect()
        assert alive[0]() is None, "an answered job is not kept until the watch's sweep"
        assert alive[1]() is not None, "a stream still running stays watched"
        await stream_reader.aclose()
        del streamed, stream_reader
        gc.collect()
        assert alive[1]() is None


class _GoneRequest:
    """A request whose client has gone: ``receive`` says so at once."""

    received = 0

    async def receive(self) -> dict[str, str]:
        self.received += 1
        return {"type": "http.disconnect"}


async def test_a_connection_is_watched_only_once_its_job_has_run_a_while() -> None:
    async with JobWatch() as watch:
        job = Job("x", model="m", request_id="r")
        reader = JobReader(job, 5.0, watch)
        request = _GoneRequest()
        started = time.perf_counter()
        with pytest.raises(ClientDisconnect):
            await reader.guarded(request)  # type: ignore[arg-type]
        waited = time.perf_counter() - started
        assert CONNECTION_WATCH_AFTER_S <= waited < CONNECTION_WATCH_AFTER_S + 0.5
        assert request.received == 1
        assert job.cancelled, "the job of a client that left is dropped"


async def test_a_slow_job_is_followed_until_it_settles() -> None:
    async with JobWatch() as watch:
        job = Job("x", model="m", request_id="r")
        reader = JobReader(job, 5.0, watch)
        await wait_until(lambda: watch.following == 1, timeout=2)
        job.deliver(Chunk("a"))
        job.deliver(Done(None))
        assert await reader.next() == Chunk("a")
        assert await reader.next() == Done(None)
        await wait_until(lambda: watch.following == 0, timeout=2)


async def test_a_long_job_costs_the_watch_no_wakeups_and_a_new_one_is_still_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sweep sleeps to the next check (not a fixed tick): a stream followed to a far
    deadline wakes the loop only at its own checks, and a job added meanwhile still is."""
    sweeps = 0
    check = JobWatch._check_followed

    def counted(self: JobWatch, now: float) -> None:
        nonlocal sweeps
        sweeps += 1
        check(self, now)

    monkeypatch.setattr(JobWatch, "_check_followed", counted)
    async with JobWatch() as watch:
        long = Job("x", model="m", request_id="r")
        JobReader(long, 600.0, watch)
        await anyio.sleep(CONNECTION_WATCH_AFTER_S + 0.5)
        assert watch.following == 1
        assert sweeps <= 3, "followed at its check and at its connection's, nothing more"
        added = Job("y", model="m", request_id="s")
        JobReader(added, 600.0, watch)
        await wait_until(lambda: watch.following == 2, timeout=WATCH_AFTER_S + 0.5)
        long.deliver(Done(None))
        added.deliver(Done(None))


async def test_the_deadline_arrives_as_an_error_after_what_was_delivered() -> None:
    async with JobWatch() as watch:
        job = Job("x", model="m", request_id="r")
        reader = JobReader(job, 0.2, watch)
        job.deliver(Chunk("early"))
        started = time.perf_counter()
        assert await reader.next() == Chunk("early")
        with pytest.raises(RequestTimeout, match=r"0\.2 s"):
            await reader.next()
        assert 0.15 < time.perf_counter() - started < 1.0
        assert job.cancelled and job.outcome == "cancelled"
        job.deliver(Chunk("late"))  # the worker's late items go nowhere
        assert watch.following == 0


async def test_a_stream_past_its_deadline_ends_with_an_error_event_and_frees_the_worker() -> None:
    async with running_server([define(models.Words)], request_timeout_s=0.4) as client:
        body = {"kwargs": {"n": 1000, "delay_s": 0.05}, "stream": True}
        async with client.stream("POST", "/v1/infer/words", json=body) as r:
            events = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
        assert len(events) >= 2, "items streamed before the deadline"
        error = json.loads(events[-1])["error"]
        assert error["type"] == "timeout_error" and "0.4 s" in error["message"]

        async def freed() -> bool:
            stats = (await client.get("/v1/stats")).json()["models"]["words"]
            return stats["busy_workers"] == 0 and stats["in_flight"] == 0

        await wait_until(freed, timeout=3)
        r = await client.post("/v1/infer/words", json={"args": [2], "stream": False})
        assert r.json() == "w0 w1 "
