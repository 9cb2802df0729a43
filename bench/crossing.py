"""In-process costs of the bridge, with no HTTP in the way.

* ``LoopHandle.call_soon`` alone: a worker thread schedules N no-op callbacks on the
  loop; we time the thread's side (what a generating worker pays per token) and the
  end-to-end rate (until the loop has run all N). Raw ``call_soon_threadsafe``, trio's
  ``run_sync_soon`` (through the same ``LoopHandle``) and a blocking
  ``anyio.from_thread.run_sync`` per item are measured alongside, for scale.
* A job's stream: a model that yields N ints, read by a coroutine that does nothing
  else: µs per item through ``JobHandle.emit`` → ``call_soon`` → ``Job.deliver`` →
  memory stream → ``Job.events``.
* A job's round trip: a no-op job submitted and awaited, 1 and 16 at a time.

The orchestrator runs this module in a subprocess pinned to the server core (the loop
and the worker threads share one core, as they do in the HTTP runs) and reads the
JSON it prints. Run alone: ``python -m bench.crossing``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from localinfer.runtime.loop import LoopHandle


async def _cross(
    n: int, schedule: Callable[[Callable[[int], None], int], None]
) -> dict[str, float]:
    """Send ``n`` callbacks from a thread with ``schedule``; time both sides."""
    seen = 0
    finished = anyio.Event()

    def sink(_: int) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            finished.set()

    def produce() -> float:
        started = time.perf_counter()
        for i in range(n):
            schedule(sink, i)
        return time.perf_counter() - started

    started = time.perf_counter()
    thread_s = await anyio.to_thread.run_sync(produce)
    await finished.wait()
    total_s = time.perf_counter() - started
    return {"thread_us_per_item": thread_s / n * 1e6, "end_to_end_us_per_item": total_s / n * 1e6}


async def call_soon_costs(n: int) -> dict[str, dict[str, float]]:
    """The crossings available on the running backend."""
    handle = LoopHandle.current()
    out = {"LoopHandle.call_soon": await _cross(n, handle.call_soon)}
    native = anyio.lowlevel.current_token().native_token
    raw = getattr(native, "call_soon_threadsafe", None)
    if raw is not None:
        out["loop.call_soon_threadsafe"] = await _cross(n, raw)
    out["anyio.from_thread.run_sync (blocking)"] = await _cross(
        max(1, n // 10), lambda fn, i: anyio.from_thread.run_sync(fn, i)
    )
    return out


async def job_stream(n: int, buffer: int) -> dict[str, Any]:
    """Stream ``n`` items through one job; report µs per item, or where it was cut off."""
    from bench.models import Stream
    from localinfer.runtime.registry import ModelRegistry
    from localinfer.runtime.targets import user_code_definition

    definition = user_code_definition(Stream, stream_buffer=buffer)
    assert definition.prepare is not None
    async with ModelRegistry() as registry:
        model = registry.add(definition)
        await registry.wait_ready(30)
        received, error = 0, None
        started = time.perf_counter()
        job = model.submit(definition.prepare({"args": [n]}))
        try:
            async for _ in job.events():
                received += 1
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
    items = max(received - 1, 1)  # the last event is Done
    return {
        "items": n,
        "buffer": buffer,
        "received": received - (error is None),
        "error": error,
        "us_per_item": elapsed / items * 1e6,
        "items_per_s": items / elapsed,
    }


async def job_round_trip(concurrency: int, seconds: float) -> dict[str, float]:
    """No-op jobs submitted and awaited by ``concurrency`` tasks: the bridge without HTTP."""
    from bench.models import REQUEST_BODY, NoOp
    from localinfer.runtime.registry import ModelRegistry
    from localinfer.runtime.targets import user_code_definition

    definition = user_code_definition(NoOp)
    assert definition.prepare is not None
    prepare = definition.prepare
    done = 0
    async with ModelRegistry() as registry:
        model = registry.add(definition)
        await registry.wait_ready(30)
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async for _ in model.submit(prepare(REQUEST_BODY)).events():
                    pass
                done += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(client)
        elapsed = time.perf_counter() - started
    return {"jobs_per_s": done / elapsed, "us_per_job": elapsed / done * 1e6}


def _median_dicts(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def measure(reps: int, n_calls: int, n_items: int, seconds: float) -> dict[str, Any]:
    """Everything above, each repeated ``reps`` times (medians; cut-offs listed as is)."""
    crossings: dict[str, dict[str, float]] = {}
    for backend in ("asyncio", "trio"):
        samples = [anyio.run(call_soon_costs, n_calls, backend=backend) for _ in range(reps)]
        for name in samples[0]:
            crossings[f"{backend}: {name}"] = _median_dicts([s[name] for s in samples])
    roomy = [anyio.run(job_stream, n_items, n_items + 16) for _ in range(reps)]
    default = [anyio.run(job_stream, n_items, 1024) for _ in range(reps)]
    round_trips = {
        str(c): _median_dicts([anyio.run(job_round_trip, c, seconds) for _ in range(reps)])
        for c in (1, 16)
    }
    return {
        "call_soon": crossings,
        "job_stream": {
            "complete": f"{sum(r['error'] is None for r in roomy)}/{len(roomy)}",
            "us_per_item": statistics.median(r["us_per_item"] for r in roomy),
            "items_per_s": statistics.median(r["items_per_s"] for r in roomy),
            "items": n_items,
            "buffer": n_items + 16,
        },
        "job_stream_default_buffer": default,
        "job_round_trip": round_trips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.reps, args.calls, args.items, args.seconds)))


if __name__ == "__main__":
    main()
