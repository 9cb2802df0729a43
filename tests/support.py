"""Run a real localinfer server (hypercorn) inside the test's event loop, on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpx

from localinfer.config import IsolatedPriority, Settings
from localinfer.plugins import discover
from localinfer.runtime.job import Done, Job
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.resolve import model_definition, resolve
from localinfer.runtime.targets import user_code_definition
from localinfer.server.app import create_app
from localinfer.server.runner import serving


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "drain_timeout_s": 2.0}
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def running_server(
    definitions: Sequence[ModelDefinition],
    *,
    wait_ready: bool = True,
    headers: dict[str, str] | None = None,
    **setting_overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client bound to a live server serving ``definitions``."""
    app = create_app(definitions, settings(**setting_overrides))
    async with (
        serving(app, app.state.settings) as address,
        httpx.AsyncClient(base_url=address.url, timeout=30, headers=headers) as client,
    ):
        if wait_ready:
            with anyio.fail_after(30):
                while (await client.get("/ready")).status_code != 200:
                    await anyio.sleep(0.02)
        yield client


def define(target: Any, **kwargs: Any) -> ModelDefinition:
    return user_code_definition(target, **kwargs)


def define_local(
    path: Path, name: str, *, isolation: IsolatedPriority | None = None, **options: object
) -> ModelDefinition:
    """A model directory served the way ``localinfer serve <path>`` would, named ``name``
    (``isolation``: in processes of its own, as with ``--isolate``)."""
    resolved = replace(resolve(str(path), discover(), options=options), name=name)
    return model_definition(resolved, isolation=isolation)


async def job_result(job: Job, timeout: float = 30.0) -> Any:
    """The value a runtime job ends with (its streamed items are skipped)."""
    with anyio.fail_after(timeout):
        async for event in job.events():
            if isinstance(event, Done):
                return event.value
    raise AssertionError(f"job {job.request_id} ended without a result")


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Wait for ``predicate()`` (sync or async) to be true."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await anyio.sleep(interval)


class ThreadedServer:
    """A live server in a thread of its own (its own event loop), for synchronous clients."""

    def __init__(
        self,
        definitions: Sequence[ModelDefinition],
        *,
        headers: dict[str, str] | None = None,
        **setting_overrides: Any,
    ):
        self._app = create_app(definitions, settings(**setting_overrides))
        #: the app served (its state: the registry, the connection count)
        self.app = self._app
        self._headers = headers  # sent while waiting for readiness (an API key)
        self._started = threading.Event()
        self._stop: anyio.Event | None = None
        self._token: Any = None
        self._error: BaseException | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-server")

    def _run(self) -> None:
        async def main() -> None:
            self._stop = anyio.Event()
            self._token = anyio.lowlevel.current_token()
            async with serving(self._app, self._app.state.settings) as address:
                self.url = address.url
                self._started.set()
                await self._stop.wait()

        try:
            anyio.run(main)
        except BaseException as exc:  # surfaced by __enter__
            self._error = exc
            self._started.set()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self._started.wait(60)
        if self._error is not None:
            raise self._error
        deadline = time.monotonic() + 120
        while httpx.get(f"{self.url}/ready", headers=self._headers).status_code != 200:
            health = httpx.get(f"{self.url}/health", headers=self._headers).json()["models"]
            failed = [w["error"] for m in health.values() for w in m["workers"] if w["error"]]
            if failed or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"models did not load: {failed or health}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            anyio.from_thread.run_sync(self._stop.set, token=self._token)
        self._thread.join(30)


def server_timing(headers: httpx.Headers) -> dict[str, float]:
    """``Server-Timing: queue;dur=1.2, run;dur=3.4`` -> ``{"queue": 1.2, "run": 3.4}``."""
    timings = {}
    for metric in headers["server-timing"].split(","):
        name, _, params = metric.strip().partition(";")
        key, _, value = params.partition("=")
        assert key == "dur", metric
        timings[name] = float(value)
    return timings


#: the names the tiny chat, embedding and Whisper models are served under
CHAT, EMBED, ASR = "tiny-chat", "tiny-embed", "tiny-whisper"


def tiny_models(
    chat_dir: Path, embed_dir: Path, whisper_dir: Path, *, whisper_tokens: int
) -> list[ModelDefinition]:
    """The tiny chat, embedding and Whisper models as ``CHAT``, ``EMBED`` and ``ASR``.

    A random Whisper babbles to its length limit: ``whisper_tokens`` keeps windows short.
    """
    return [
        define_local(chat_dir, CHAT),
        define_local(embed_dir, EMBED),
        define_local(whisper_dir, ASR, max_new_tokens=whisper_tokens),
    ]
