"""Handler → model calls through the context: no HTTP, and no deadlock on the caller's worker."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from localinfer.errors import (
    HandlerFailed,
    ModelNotFound,
    RequestTimeout,
    WouldDeadlock,
)
from localinfer.handlers.base import DETACHED, Handler, current_context
from localinfer.runtime import Chunk, Done, ModelDefinition, ModelRegistry
from localinfer.runtime.context import CallGraph
from localinfer.runtime.job import Job
from tests.support import define

pytestmark = pytest.mark.anyio


class Upper(Handler):
    """The callee: upper-cases text, or streams it word by word, or fails, or sleeps."""

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [self._one(x) for x in inputs]

    def _one(self, x: Any) -> Any:
        if x == "fail":
            raise ValueError("the callee failed")
        if isinstance(x, dict) and "sleep" in x:
            time.sleep(x["sleep"])
            return "slept"
        if isinstance(x, dict) and "words" in x:
            return iter(x["words"].upper().split())
        return {"text": str(x).upper(), "thread": threading.current_thread().name}


class Caller(Handler):
    """Calls the model named in its input through ``self.context``."""

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [self._one(x) for x in inputs]

    def _one(self, x: dict[str, Any]) -> Any:
        if x.get("stream"):
            return list(self.context.stream(x["model"], x["payload"]))
        result = self.context.call(x["model"], x["payload"], timeout_s=x.get("timeout_s"))
        return {"result": result, "caller_thread": threading.current_thread().name}


def defn(name: str, handler: type[Handler], workers: int = 1) -> ModelDefinition:
    return ModelDefinition(
        name=name, create_handler=lambda i, d: handler(), workers_per_device=workers
    )


async def final(job: Job) -> Any:
    async for event in job.events():
        if isinstance(event, Done):
            return event.value
        assert isinstance(event, Chunk)
    raise AssertionError("no result")


async def test_a_handler_calls_another_model_in_its_worker_thread() -> None:
    async with ModelRegistry() as registry:
        registry.add(defn("upper", Upper))
        caller = registry.add(defn("caller", Caller))
        await registry.wait_ready(10)
        out = await final(caller.submit({"model": "upper", "payload": "hi"}))
    assert out["result"]["text"] == "HI"
    # the work ran on the callee's worker while the caller's worker waited
    assert out["result"]["thread"].startswith("localinfer:upper:")
    assert out["caller_thread"].startswith("localinfer:caller:")


async def test_stream_and_joined_stream() -> None:
    async with ModelRegistry() as registry:
        registry.add(defn("upper", Upper))
        caller = registry.add(defn("caller", Caller))
        payload = {"words": "a b c"}
        streamed = await final(caller.submit({"model": "upper", "payload": payload, "stream": 1}))
        joined = await final(caller.submit({"model": "upper", "payload": payload}))
    assert streamed == ["A", "B", "C"]
    assert joined["result"] == "ABC"  # call() joins a text stream


async def test_errors_of_the_callee_reach_the_caller() -> None:
    async with ModelRegistry() as registry:
        registry.add(defn("upper", Upper))
        caller = registry.add(defn("caller", Caller))
        with pytest.raises(HandlerFailed, match="the callee failed"):
            await final(caller.submit({"model": "upper", "payload": "fail"}))
        with pytest.raises(ModelNotFound, match="'nope'"):
            await final(caller.submit({"model": "nope", "payload": "x"}))
        with pytest.raises(RequestTimeout):
            await final(
                caller.submit({"model": "upper", "payload": {"sleep": 1.0}, "timeout_s": 0.1})
            )
        # the caller's worker is free again
        assert (await final(caller.submit({"model": "upper", "payload": "ok"})))["result"][
            "text"
        ] == "OK"


async def test_a_single_worker_calling_its_own_model_is_refused_not_deadlocked() -> None:
    async with ModelRegistry() as registry:
        caller = registry.add(defn("caller", Caller))
        with anyio.fail_after(5), pytest.raises(WouldDeadlock, match="cannot call itself"):
            await final(caller.submit({"model": "caller", "payload": {"model": "x"}}))
        assert registry.calls.waiting("caller") == 0


async def test_with_two_workers_a_model_may_call_itself() -> None:
    class Recursive(Handler):
        def run_batch(self, inputs: list[Any]) -> list[Any]:
            n = inputs[0]
            return [0 if n == 0 else 1 + self.context.call("rec", n - 1)]

    async with ModelRegistry() as registry:
        model = registry.add(defn("rec", Recursive, workers=2))
        with anyio.fail_after(5):
            assert await final(model.submit(1)) == 1  # one level: the other worker answers
            # two levels would need a third worker: refused, not hung
            with pytest.raises(WouldDeadlock):
                await final(model.submit(2))


async def test_a_cycle_between_two_single_worker_models_is_refused() -> None:
    class PingPong(Handler):
        def run_batch(self, inputs: list[Any]) -> list[Any]:
            hops = inputs[0]
            if hops == 0:
                return ["done"]
            other = "pong" if self.context.model == "ping" else "ping"
            return [self.context.call(other, hops - 1)]

    async with ModelRegistry() as registry:
        ping = registry.add(defn("ping", PingPong))
        registry.add(defn("pong", PingPong))
        with anyio.fail_after(5):
            assert await final(ping.submit(1)) == "done"  # ping → pong: fine
            with pytest.raises(WouldDeadlock, match="'pong' calling 'ping' would wait forever"):
                await final(ping.submit(2))  # ping → pong → ping: ping's worker waits


def test_call_graph_finds_only_real_deadlocks() -> None:
    graph = CallGraph()
    capacity = {"a": 1, "b": 2, "c": 1}.__getitem__
    assert graph.would_deadlock("a", "a", capacity)
    assert not graph.would_deadlock("b", "b", capacity)
    graph.add("b", "c")  # one of b's workers waits on c (which is free)
    assert not graph.would_deadlock("b", "b", capacity)  # c will answer, freeing a b worker
    graph.add("c", "b")  # now c waits on b, whose workers wait on c and on b
    assert graph.would_deadlock("b", "b", capacity)
    graph.remove("c", "b")
    assert not graph.would_deadlock("b", "b", capacity)


class UsesCurrentContext:
    """User code (not a Handler) reaches other models through current_context()."""

    name = "shout"

    def infer(self, text: str) -> Any:
        return current_context().call("upper", text)["text"] + "!"


async def test_user_code_uses_current_context() -> None:
    from localinfer.handlers.user_code import InferRequest

    async with ModelRegistry() as registry:
        registry.add(defn("upper", Upper))
        shout = registry.add(define(UsesCurrentContext))
        assert await final(shout.submit(InferRequest(("hey",)))) == "HEY!"


async def test_calls_from_the_event_loop_are_refused() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(defn("upper", Upper))
        assert model.context is not None
        with pytest.raises(RuntimeError, match="never from the event loop"):
            model.context.call("upper", "x")


def test_a_handler_outside_the_runtime_says_it_cannot_call() -> None:
    assert Handler.context is DETACHED
    with pytest.raises(RuntimeError, match="not served by localinfer"):
        Caller().context.call("x", 1)
    assert current_context() is DETACHED  # not a worker thread
