"""Faults through a live server: out of memory, dying and hung workers, and clients that
hang up while queued, during prefill and mid-stream (real sockets, the tiny chat model)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from localinfer.plugins import discover
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import define, running_server, wait_until

pytestmark = pytest.mark.anyio


class Faulty:
    """User code failing the ways model code fails; otherwise it names its thread."""

    name = "faulty"

    def infer(self, kind: str = "", seconds: float = 0.0, n: int = 3) -> Any:
        if kind == "cuda-oom":
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "stream-then-oom":
            return self._stream_then_oom(n)
        if kind == "sleep":
            time.sleep(seconds)
        return {"thread": threading.current_thread().name}

    def _stream_then_oom(self, n: int) -> Iterator[str]:
        for i in range(n):
            yield f"piece{i} "
        raise MemoryError("no room for the next piece")


async def stats_of(client: httpx.AsyncClient, model: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/v1/stats")).json()["models"][model]
    return body


async def health_of(client: httpx.AsyncClient, model: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/health")).json()
    return {"status": body["status"], **body["models"][model]}


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


# -- out of memory: 503, and the same worker serves the next request ----------------------


async def test_cuda_out_of_memory_is_503_and_the_same_worker_serves_next() -> None:
    pytest.importorskip("torch")
    async with running_server([define(Faulty)]) as client:
        r = await client.post("/v1/infer/faulty", json={"kwargs": {"kind": "cuda-oom"}})
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "resource_exhausted"
        assert error["type"] == "service_unavailable"
        assert "out of memory" in error["message"]
        r = await client.post("/v1/infer/faulty", json={})
        assert r.json() == {"thread": "localinfer:faulty:0.0"}  # not a restarted thread
        health = await health_of(client, "faulty")
        assert health["restarts"] == 0 and health["status"] == "ok"


async def test_out_of_memory_mid_stream_ends_it_with_an_error_event() -> None:
    async with running_server([define(Faulty)]) as client:
        r = await client.post(
            "/v1/infer/faulty", json={"kwargs": {"kind": "stream-then-oom"}, "stream": True}
        )
        events = sse_data(r.text)
        assert events[:3] == ['"piece0 "', '"piece1 "', '"piece2 "']
        assert json.loads(events[3])["error"]["code"] == "resource_exhausted"
        assert "[DONE]" not in events
        r = await client.post("/v1/infer/faulty", json={})
        assert r.json() == {"thread": "localinfer:faulty:0.0"}


# -- a dying worker: its request answered, nothing behind it lost, restarted ---------------


async def test_a_dying_worker_answers_its_request_and_loses_none_behind_it() -> None:
    async with running_server([define(Faulty)]) as client:
        replies: dict[str, httpx.Response] = {}

        async def call(tag: str, kwargs: dict[str, Any]) -> None:
            replies[tag] = await client.post("/v1/infer/faulty", json={"kwargs": kwargs})

        async def busy() -> bool:
            return (await stats_of(client, "faulty"))["busy_workers"] == 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "busy", {"kind": "sleep", "seconds": 0.4})
            await wait_until(busy)
            tg.start_soon(call, "killer", {"kind": "interrupt"})
            await anyio.sleep(0.02)
            for i in range(3):
                tg.start_soon(call, f"behind{i}", {})
        assert replies["busy"].status_code == 200
        assert replies["killer"].status_code == 500
        assert replies["killer"].json()["error"]["code"] == "worker_crashed"
        assert "KeyboardInterrupt" in replies["killer"].json()["error"]["message"]
        for i in range(3):
            assert replies[f"behind{i}"].status_code == 200
            assert replies[f"behind{i}"].json() == {"thread": "localinfer:faulty:0.1"}
        health = await health_of(client, "faulty")
        assert health["restarts"] == 1
        assert health["workers"][0]["generation"] == 1
        assert health["workers"][0]["state"] == "ready"
        assert (await stats_of(client, "faulty"))["in_flight"] == 0


# -- a hang past the timeout: 504, then the worker is replaced -----------------------------


async def test_a_hang_past_the_timeout_is_504_and_the_worker_is_replaced() -> None:
    async with running_server([define(Faulty)], request_timeout_s=0.3, hang_grace_s=0.3) as client:
        started = time.monotonic()
        r = await client.post(
            "/v1/infer/faulty", json={"kwargs": {"kind": "sleep", "seconds": 2.5}}
        )
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "timeout"

        async def replaced() -> bool:
            health = await health_of(client, "faulty")
            worker = health["workers"][0]
            return len(health["abandoned_workers"]) == 1 and worker["state"] == "ready"

        await wait_until(replaced, timeout=3)
        health = await health_of(client, "faulty")
        assert health["status"] == "ok" and health["hangs"] == 1
        assert health["workers"][0]["generation"] == 1
        assert health["abandoned_workers"][0]["state"] == "abandoned"
        stats = await stats_of(client, "faulty")
        assert stats["hangs"] == 1 and stats["hung_workers"] == 1
        assert stats["abandoned_workers"] == 1 and stats["in_flight"] == 0

        # capacity is back long before the stuck call returns
        r = await client.post("/v1/infer/faulty", json={})
        assert r.json() == {"thread": "localinfer:faulty:0.1"}
        assert time.monotonic() - started < 2.4  # the stuck call ends at 2.5 s

        # the stuck thread returns: it ends, and its late result reached nobody
        async def abandoned_gone() -> bool:
            return (await stats_of(client, "faulty"))["abandoned_workers"] == 0

        await wait_until(abandoned_gone, timeout=5)
        stats = await stats_of(client, "faulty")
        assert stats["succeeded"] == 1 and stats["cancelled"] == 1
        assert stats["hung_workers"] == 0


async def test_past_the_bound_a_hung_worker_makes_the_model_degraded() -> None:
    async with running_server(
        [define(Faulty)], request_timeout_s=0.2, hang_grace_s=0.2, max_abandoned_workers=0
    ) as client:
        r = await client.post(
            "/v1/infer/faulty", json={"kwargs": {"kind": "sleep", "seconds": 1.5}}
        )
        assert r.status_code == 504

        async def hung() -> bool:
            return (await health_of(client, "faulty"))["workers"][0]["state"] == "hung"

        await wait_until(hung, timeout=3)
        health = await health_of(client, "faulty")
        assert health["status"] == "degraded" and not health["ready"]
        assert "not replaced" in health["workers"][0]["error"]
        assert health["abandoned_workers"] == []
        r = await client.post("/v1/infer/faulty", json={})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"

        async def back() -> bool:
            return (await health_of(client, "faulty"))["status"] == "ok"

        await wait_until(back, timeout=5)  # the call returned: the same thread serves again
        r = await client.post("/v1/infer/faulty", json={})
        assert r.json() == {"thread": "localinfer:faulty:0.0"}


# -- disconnects at every stage, on the tiny chat model ------------------------------------


class Pace:
    """How slow the tiny model is made, and what it computed (shared with its hook)."""

    prefill_s = 0.0
    token_s = 0.0
    prefills = 0
    tokens = 0
    lock = threading.Lock()

    @classmethod
    def reset(cls, prefill_s: float = 0.0, token_s: float = 0.0) -> None:
        cls.prefill_s, cls.token_s, cls.prefills, cls.tokens = prefill_s, token_s, 0, 0

    @classmethod
    def hook(cls, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        prefill = ids is not None and ids.shape[-1] > 1
        with cls.lock:
            if prefill:
                cls.prefills += 1
            else:
                cls.tokens += 1
        time.sleep(cls.prefill_s if prefill else cls.token_s)


def paced_chat(path: Path) -> ModelDefinition:
    """The tiny chat model, made slow by a forward hook and unable to stop early (no EOS):
    every request runs to ``max_tokens`` unless it is cancelled."""
    resolved = replace(resolve(str(path), discover()), name="chat")
    definition = model_definition(resolved)
    create = definition.create_handler

    def create_handler(index: int, device: str) -> Any:
        handler = create(index, device)
        load = handler.load

        def load_paced(device: str) -> None:
            load(device)
            handler.eos_token_ids = frozenset()
            handler.model.generation_config.eos_token_id = None
            handler.model.register_forward_pre_hook(Pace.hook, with_kwargs=True)

        handler.load = load_paced
        return handler

    return replace(definition, create_handler=create_handler)


def chat_body(max_tokens: int, stream: bool) -> dict[str, Any]:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


@pytest.fixture(scope="module")
def chat_definition(tiny_llama_dir: Path) -> ModelDefinition:
    return paced_chat(tiny_llama_dir)


async def freed(client: httpx.AsyncClient, cancelled: int) -> None:
    """The worker is free: nothing in flight, the next request served at once."""

    async def settled() -> bool:
        stats = await stats_of(client, "chat")
        return stats["in_flight"] == 0 and stats["busy_workers"] == 0

    await wait_until(settled, timeout=5)
    Pace.reset()
    started = time.monotonic()
    r = await client.post("/v1/chat/completions", json=chat_body(3, stream=False))
    assert r.status_code == 200
    assert r.json()["usage"]["completion_tokens"] == 3
    assert time.monotonic() - started < 2.0
    stats = await stats_of(client, "chat")
    assert stats["cancelled"] == cancelled and stats["in_flight"] == 0


async def test_disconnect_mid_stream_stops_generation(chat_definition: ModelDefinition) -> None:
    Pace.reset(token_s=0.02)
    async with running_server([chat_definition]) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat_body(400, stream=True)
        ) as r:
            assert r.status_code == 200
            seen = 0
            async for line in r.aiter_lines():
                seen += line.startswith("data: ")
                if seen == 4:
                    break  # hang up mid-stream
        await anyio.sleep(0.3)
        tokens = Pace.tokens
        await anyio.sleep(0.3)
        assert Pace.tokens == tokens < 100  # generation stopped, far short of 400
        await freed(client, cancelled=1)


async def test_disconnect_during_prefill_stops_before_decoding(
    chat_definition: ModelDefinition,
) -> None:
    Pace.reset(prefill_s=0.8, token_s=0.02)
    async with running_server([chat_definition]) as client:
        with anyio.move_on_after(0.3):  # no first token yet: still in prefill
            async with client.stream(
                "POST", "/v1/chat/completions", json=chat_body(400, stream=True)
            ) as r:
                await r.aread()
            raise AssertionError("the response came before the prefill ended")
        assert Pace.prefills == 1 and Pace.tokens == 0
        await anyio.sleep(1.0)  # the prefill ends; at most one token is decoded after it
        assert Pace.prefills == 1 and Pace.tokens <= 1
        await freed(client, cancelled=1)


async def test_disconnect_while_queued_drops_the_request(
    chat_definition: ModelDefinition,
) -> None:
    Pace.reset(token_s=0.02)
    async with running_server([chat_definition]) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat_body(400, stream=True)
        ) as first:
            lines = first.aiter_lines()
            assert (await lines.__anext__()).startswith("data: ")  # generating
            with anyio.move_on_after(0.3):
                await client.post("/v1/chat/completions", json=chat_body(5, stream=False))
                raise AssertionError("the queued request was answered")
            stats = await stats_of(client, "chat")
            assert stats["busy_workers"] == 1

        # the first hung up too; the queued one was dropped before it ran
        async def dropped() -> bool:
            return (await stats_of(client, "chat"))["dropped"] == 1

        await wait_until(dropped, timeout=5)
        assert Pace.prefills == 1  # the queued request never reached the model
        await freed(client, cancelled=2)


class SlowStart:
    """User code whose construction (its load) waits until ``release`` is set."""

    name = "slow-start"
    release = threading.Event()

    def __init__(self) -> None:
        self.release.wait(30)

    def infer(self) -> str:
        return "ok"


async def test_a_load_past_load_timeout_s_fails_the_model_on_health_ready_and_stats() -> None:
    SlowStart.release.clear()
    try:
        async with running_server(
            [define(SlowStart)], wait_ready=False, load_timeout_s=0.3
        ) as client:

            async def failed() -> bool:
                return (await health_of(client, "slow-start"))["workers"][0]["state"] == "failed"

            await wait_until(failed, timeout=5)
            health = await health_of(client, "slow-start")
            assert health["status"] == "degraded"
            assert "load_timeout_s" in health["workers"][0]["error"]
            assert len(health["abandoned_workers"]) == 1
            r = await client.get("/ready")
            assert r.status_code == 503
            assert "load_timeout_s" in r.json()["failed"]["slow-start"]
            stats = await stats_of(client, "slow-start")
            assert stats["abandoned_workers"] == 1
            assert stats["abandoned_device_memory_bytes"] == 0  # CPU: not measured
            r = await client.post("/v1/infer/slow-start", json={})
            assert r.status_code == 503 and "load_timeout_s" in r.json()["error"]["message"]
    finally:
        SlowStart.release.set()


async def test_health_and_models_say_which_engine_serves_each_model() -> None:
    from localinfer.handlers.base import Handler

    class Engined(Handler):
        engine = "test engine x2"

        def run_batch(self, inputs: list[Any]) -> list[Any]:
            return inputs

    definition = ModelDefinition(name="engined", create_handler=lambda i, d: Engined())
    async with running_server([definition]) as client:
        models = (await client.get("/v1/models")).json()["data"]
        assert [m["engine"] for m in models if m["id"] == "engined"] == ["test engine x2"]
        health = await health_of(client, "engined")
        assert health["engine"] == "test engine x2"
        assert health["workers"][0]["engine"] == "test engine x2"
