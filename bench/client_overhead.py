"""The notebook face's overhead: ``Engine`` against the bare handler, ``Client`` against the
official ``openai`` SDK.

* In process (one process, as in a notebook): a no-op model called directly, through
  ``anyio.to_thread.run_sync`` (a bare thread hop, for scale), through ``Engine.infer``,
  and through ``Client.infer`` against an in-process ``Server`` in the same loop; and a
  1000-item generator read directly and through ``Engine.infer_stream``.
* Over loopback: a server in a subprocess (on the first CPU when there are two) serves an
  instant chat model and an instant embeddings model; this process (on the other CPU)
  calls them one request at a time with ``Client`` / ``SyncClient`` and with
  ``openai.AsyncOpenAI`` / ``openai.OpenAI``, all against that same server.

Every figure is the median over repeats of the mean time per call within a repeat; every
ratio is taken within one repeat (the two clients alternate, so drift hits both) and its
median is shown.

    python -m bench.client_overhead            # ~2 min; prints the tables
    python -m bench.client_overhead --docs     # and rewrites its section of docs/benchmarks.md
    python -m bench.client_overhead --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np

from bench.common import (
    ROOT,
    default_pinning,
    fmt,
    log,
    machine,
    markdown_table,
    write_docs_block,
    write_results,
)
from localinfer.handlers.base import Handler, WorkItem
from localinfer.handlers.tasks import EmbeddingResult, GenerationResult

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- notebook-face:begin", "<!-- notebook-face:end -->"
CHAT_TOKENS = 16
STREAM_TOKENS = 64
EMBED_TEXTS = ["the quick brown fox", "jumps over", "the lazy dog", "again and again"]


# -- the models: instant, so what is measured is everything around them -------------------


class NoOp:
    name = "noop"

    def infer(self, x: Any) -> Any:
        return x


class Items:
    name = "items"

    def infer(self, n: int) -> Iterator[int]:
        yield from range(n)


class InstantChat(Handler):
    """Chat task: ``max_new_tokens`` deltas of ``"tok "``, no model behind them."""

    task = "chat"
    name = "chat"

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            count = item.payload.max_new_tokens
            for _ in range(count):
                item.emit("tok ")
            item.finish(GenerationResult("tok " * count, "length", 8, count, 0.0, 0.0))


class InstantEmbeddings(Handler):
    """Embeddings task: fixed unit vectors of 384 dimensions."""

    task = "embeddings"
    name = "embed"
    vector = (np.ones(384, dtype=np.float32) / np.sqrt(384)).tolist()

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [
            EmbeddingResult([self.vector] * len(r.texts), len(r.texts), (1,) * len(r.texts))
            for r in inputs
        ]


# -- timing --------------------------------------------------------------------------------


async def per_call_us(call: Callable[[], Awaitable[object]], calls: int) -> float:
    await call()
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls * 1e6


def per_call_us_sync(call: Callable[[], object], calls: int) -> float:
    call()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def summarise(samples: dict[str, list[float]]) -> dict[str, float]:
    return {key: statistics.median(values) for key, values in samples.items()}


# -- in process ----------------------------------------------------------------------------


async def runtime_call(engine: Any, value: object) -> object:
    """The runtime alone: submit an already-parsed job and read its result."""
    from localinfer.handlers.user_code import InferRequest
    from localinfer.runtime.job import Done

    job = engine.registry.get("noop").submit(InferRequest((value,)))
    try:
        while not isinstance(event := await job.next_event(), Done):
            pass
        return event.value
    finally:
        job.release()


async def in_process(repeats: int, calls: int) -> dict[str, Any]:
    import localinfer

    noop, items = NoOp(), Items()
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    async with (
        localinfer.Engine({"noop": NoOp, "items": Items}, device="cpu") as engine,
        localinfer.Server({"noop": NoOp}, device="cpu") as server,
        server.client() as client,
        httpx.AsyncClient(base_url=server.url) as raw,
    ):

        async def direct() -> object:
            return noop.infer("x")

        async def raw_post() -> object:
            return (await raw.post("/v1/infer/noop", json={"args": ["x"]})).json()

        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("thread hop", lambda: anyio.to_thread.run_sync(noop.infer, "x")),
            ("runtime", lambda: runtime_call(engine, "x")),
            ("Engine.infer", lambda: engine.infer("noop", "x")),
            ("httpx.AsyncClient.post (in-process Server)", raw_post),
            ("Client.infer (in-process Server)", lambda: client.infer("noop", "x")),
        ]
        for repeat in range(repeats):
            log(f"in process: repeat {repeat + 1}/{repeats}")
            add("direct", await per_call_us(direct, calls * 10))
            shift = repeat % len(cases)  # each repeat starts with another case: drift is shared
            for name, call in cases[shift:] + cases[:shift]:
                add(name, await per_call_us(call, calls))
            n = 1000
            started = time.perf_counter()
            for _ in items.infer(n):
                pass
            add("stream direct", (time.perf_counter() - started) / n * 1e6)
            started = time.perf_counter()
            async for _ in engine.infer_stream("items", n):
                pass
            add("stream Engine", (time.perf_counter() - started) / n * 1e6)
            last = {key: values[-1] for key, values in samples.items()}
            add("ratio Engine/runtime", last["Engine.infer"] / last["runtime"])
            add(
                "ratio Client/Engine",
                last["Client.infer (in-process Server)"] / last["Engine.infer"],
            )
            add(
                "ratio Client/httpx",
                last["Client.infer (in-process Server)"]
                / last["httpx.AsyncClient.post (in-process Server)"],
            )
    return {"samples": samples, "median": summarise(samples)}


# -- over loopback: Client vs the openai SDK -----------------------------------------------


def serve(port: int) -> None:
    """The subprocess: instant chat and embeddings models on ``port`` until killed."""
    import localinfer

    async def main() -> None:
        server = localinfer.Server(
            {"chat": InstantChat(), "embed": InstantEmbeddings()},
            device="cpu",
            port=port,
            embedding_cache_size=0,  # every call reaches the model
            log_level="warning",
        )
        async with server:
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)


def start_server() -> tuple[subprocess.Popen[str], str]:
    from bench.common import free_port

    port = free_port()
    pinning = default_pinning()
    pinning.pin_this_process_to_client()
    command = [*pinning.server_prefix(), sys.executable, "-m", "bench.client_overhead"]
    process = subprocess.Popen(
        [*command, "--serve", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the benchmark server did not start")
    return process, f"http://127.0.0.1:{port}"


async def loopback(url: str, repeats: int, calls: int) -> dict[str, Any]:
    import openai

    from localinfer.client import Client, SyncClient

    messages: Any = [{"role": "user", "content": "hi"}]  # both clients' message types
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    async with (
        Client(url) as client,
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as sdk,
    ):
        sync_client = SyncClient(url)
        sync_sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)

        async def client_stream() -> None:
            async for _ in client.chat(
                messages, model="chat", max_tokens=STREAM_TOKENS, stream=True
            ):
                pass

        async def sdk_stream() -> None:
            reply = await sdk.chat.completions.create(
                model="chat",
                messages=messages,
                max_tokens=STREAM_TOKENS,
                stream=True,
            )
            async for _ in reply:
                pass

        cases: list[
            tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]
        ] = [
            (
                f"chat ({CHAT_TOKENS} tokens)",
                lambda: client.chat(messages, model="chat", max_tokens=CHAT_TOKENS),
                lambda: sdk.chat.completions.create(
                    model="chat", messages=messages, max_tokens=CHAT_TOKENS
                ),
            ),
            (f"chat stream ({STREAM_TOKENS} tokens)", client_stream, sdk_stream),
            (
                f"embeddings ({len(EMBED_TEXTS)} x 384)",
                lambda: client.embed(EMBED_TEXTS, model="embed"),
                lambda: sdk.embeddings.create(model="embed", input=EMBED_TEXTS),
            ),
        ]
        sync_cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            (
                f"chat ({CHAT_TOKENS} tokens), sync",
                lambda: sync_client.chat(messages, model="chat", max_tokens=CHAT_TOKENS),
                lambda: sync_sdk.chat.completions.create(
                    model="chat", messages=messages, max_tokens=CHAT_TOKENS
                ),
            ),
            (
                f"embeddings ({len(EMBED_TEXTS)} x 384), sync",
                lambda: sync_client.embed(EMBED_TEXTS, model="embed"),
                lambda: sync_sdk.embeddings.create(model="embed", input=EMBED_TEXTS),
            ),
        ]
        for repeat in range(repeats):
            log(f"loopback: repeat {repeat + 1}/{repeats}")
            for name, ours, theirs in cases:
                first, second = (ours, theirs) if repeat % 2 == 0 else (theirs, ours)
                a = await per_call_us(first, calls)
                b = await per_call_us(second, calls)
                ours_us, theirs_us = (a, b) if repeat % 2 == 0 else (b, a)
                add(f"{name}|localinfer", ours_us)
                add(f"{name}|openai", theirs_us)
                add(f"{name}|ratio", ours_us / theirs_us)
            for name, ours_sync, theirs_sync in sync_cases:
                ours_us = await anyio.to_thread.run_sync(per_call_us_sync, ours_sync, calls)
                theirs_us = await anyio.to_thread.run_sync(per_call_us_sync, theirs_sync, calls)
                add(f"{name}|localinfer", ours_us)
                add(f"{name}|openai", theirs_us)
                add(f"{name}|ratio", ours_us / theirs_us)
        sync_client.close()
        sync_sdk.close()
    return {"samples": samples, "median": summarise(samples)}


# -- report --------------------------------------------------------------------------------


def tables(result: dict[str, Any]) -> tuple[str, str]:
    inner = result["in_process"]["median"]
    rows = [
        ["handler called directly", fmt(inner["direct"], 2), "-"],
        ["`anyio.to_thread.run_sync` (bare thread hop)", fmt(inner["thread hop"]), "-"],
        ["runtime alone (`ServedModel.submit` + `Job.next_event`)", fmt(inner["runtime"]), "-"],
        [
            "`Engine.infer`",
            fmt(inner["Engine.infer"]),
            fmt(inner["ratio Engine/runtime"], 2) + "x runtime",
        ],
        [
            "raw `httpx.AsyncClient.post` → in-process `Server` (same loop)",
            fmt(inner["httpx.AsyncClient.post (in-process Server)"]),
            "-",
        ],
        [
            "`Client.infer` → in-process `Server` (same loop)",
            fmt(inner["Client.infer (in-process Server)"]),
            fmt(inner["ratio Client/Engine"], 2)
            + "x Engine, "
            + fmt(inner["ratio Client/httpx"], 2)
            + "x raw httpx",
        ],
        ["generator item, read directly", fmt(inner["stream direct"], 2), "-"],
        ["generator item, via `Engine.infer_stream`", fmt(inner["stream Engine"], 2), "-"],
    ]
    first = markdown_table(["no-op call", "µs per call", "ratio (same repeat)"], rows)
    loop = result["loopback"]["median"]
    cases = list(dict.fromkeys(key.split("|")[0] for key in loop))  # in measurement order
    second = markdown_table(
        ["request", "localinfer µs", "openai SDK µs", "localinfer / openai"],
        [
            [
                case,
                fmt(loop[f"{case}|localinfer"]),
                fmt(loop[f"{case}|openai"]),
                fmt(loop[f"{case}|ratio"], 2),
            ]
            for case in cases
        ],
    )
    return first, second


def docs_block(result: dict[str, Any], command: str) -> str:
    first, second = tables(result)
    meta = result["machine"]
    load = result["load_average"]
    return f"""{BEGIN} (generated by `python -m bench.client_overhead --docs`) -->

Measured {result["measured"]} ({result["wall_s"]:.0f} s of wall time, load average
{load[0]:.2f} before / {load[1]:.2f} after on {meta["cpus"]} CPUs; the machine is shared).
Reproduce with:

```sh
{command}
```

One request at a time; each figure is the median over {result["repeats"]} repeats of the mean
time per call ({result["calls"]} calls a repeat); each ratio is taken within a repeat and its
median shown. Models answer instantly, so what is measured is everything around them.

**In process** (one process, as in a notebook): a no-op `infer` called directly, through a bare
`anyio.to_thread.run_sync`, through `Engine.infer` (job queue, worker thread, result stream)
and through `Client.infer` against a `Server` running in the same event loop (HTTP over
loopback, both ends in one process):

{first}

**`Client` vs the `openai` SDK** against the same server (a subprocess
{"on CPU 0, the clients on CPU 1" if meta["cpus"] and meta["cpus"] > 1 else "on the same CPU"}); an
instant chat model ({CHAT_TOKENS} or {STREAM_TOKENS} `"tok "` deltas) and an instant embeddings
model (384 dims; `Client` asks for base64, the SDK does too by default):

{second}

{reading(result)}

{END}"""


def reading(result: dict[str, Any]) -> str:
    """What the tables say, from this run's numbers."""
    inner, loop = result["in_process"]["median"], result["loopback"]["median"]
    ratios = [v for k, v in loop.items() if k.endswith("|ratio")]
    return (
        f"Reading: a call through `Engine` costs "
        f"{inner['ratio Engine/runtime']:.2f}x the runtime's own round trip (job queue, "
        f"worker thread, result stream; {inner['runtime']:.0f} µs here, a bare thread hop "
        f"being {inner['thread hop']:.0f} µs): the Engine adds no measurable layer of its "
        f"own. HTTP in the same process costs {inner['ratio Client/Engine']:.0f}x that, "
        f"nearly all of it in httpx and the server: `Client` takes "
        f"{inner['ratio Client/httpx']:.2f}x a raw `httpx.AsyncClient.post`. Against one "
        f"server, `Client` takes {min(ratios):.2f}-{max(ratios):.2f}x the time of the "
        f"`openai` SDK per request."
    )


def write_docs(block: str) -> None:
    write_docs_block(DOCS, BEGIN, END, block, "## Notebook face")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few repeats and calls")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--docs", action="store_true", help="rewrite the docs section")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    repeats = args.repeats or (3 if args.quick else 7)
    calls = args.calls or (50 if args.quick else 300)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeats": repeats,
        "calls": calls,
        "machine": machine(),
    }
    result["in_process"] = anyio.run(in_process, repeats, calls)
    process, url = start_server()
    try:
        result["loopback"] = anyio.run(loopback, url, repeats, calls)
    finally:
        os.killpg(process.pid, 15)
        process.wait(10)
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = [load_before, os.getloadavg()[0]]
    path = write_results("client_overhead", result)
    log(f"results: {path}")
    first, second = tables(result)
    print(first, second, sep="\n\n")
    if args.docs:
        command = "python -m bench.client_overhead --docs" + (" --quick" if args.quick else "")
        write_docs(docs_block(result, command))
        log(f"updated {DOCS}")


if __name__ == "__main__":
    main()
