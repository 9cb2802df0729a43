"""The cost of one result crossing from a worker thread to the loop, in µs per item.

In process (``bench.crossing``, pinned to the server core): ``LoopHandle.call_soon``
alone, and a job streaming N ints to a reader that does nothing else. Over HTTP: the
same streaming model behind ``localinfer serve``, read as one JSON list
(``"stream": false``: every item still crosses, only the response is one piece) and
as SSE (one event per item), next to the threaded peer, which collects the generator
inside its thread (no item crosses: the floor). Finally both again with the default
``stream_buffer`` (1024), to see whether a fast producer is cut off.

Run: ``python -m bench.stream_cost [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import (
    ROOT,
    Pinning,
    default_pinning,
    fmt,
    log,
    machine,
    markdown_table,
    write_results,
)
from bench.noise import ForeignLoad, QuietWindow
from bench.rawhttp import connect, encode_request, read_response
from bench.servers import KINDS, RunningServer, running_server


@dataclass(frozen=True)
class Options:
    reps: int = 3
    calls: int = 200_000
    items_in_process: int = 100_000
    items_http: int = 50_000
    round_trip_seconds: float = 2.0

    @classmethod
    def quick(cls) -> Options:
        return cls(reps=1, calls=50_000, items_in_process=20_000, items_http=10_000,
                   round_trip_seconds=0.5)  # fmt: skip


def in_process(options: Options, pinning: Pinning) -> dict[str, Any]:
    command = [
        *pinning.server_prefix(), sys.executable, "-m", "bench.crossing",
        "--reps", str(options.reps), "--calls", str(options.calls),
        "--items", str(options.items_in_process),
        "--seconds", str(options.round_trip_seconds),
    ]  # fmt: skip
    QuietWindow(budget_s=5.0, max_cores=0.15).wait()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=600)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def fetch_stream(server: RunningServer, n: int, sse: bool) -> dict[str, Any]:
    """One request for ``n`` items; time to the last byte, and what arrived."""
    body: dict[str, Any] = {"args": [n]} if sse else {"args": [n], "stream": False}
    sock = connect(server.port, timeout_s=120)
    try:
        started = time.perf_counter()
        sock.sendall(encode_request("POST", server.infer_path, server.port, body))
        status, payload = read_response(sock)
        elapsed = time.perf_counter() - started
    finally:
        sock.close()
    if sse:
        received = payload.count(b"data: ") - payload.count(b"data: [DONE]")
        complete = b"data: [DONE]" in payload and b'"error"' not in payload
        if b'"error"' in payload:
            received -= 1  # the error event
    else:
        complete = status == 200
        received = len(json.loads(payload)) if complete else 0
        payload = payload[:300]
    return {
        "status": status,
        "complete": complete,
        "received": received,
        "seconds": elapsed,
        "us_per_item": elapsed / n * 1e6,
        "error": None if complete else payload[-300:].decode(errors="replace"),
    }


def over_http(options: Options, pinning: Pinning) -> dict[str, Any]:
    n = options.items_http
    quiet = QuietWindow(budget_s=10.0, max_cores=0.15)
    roomy = {"LOCALINFER_STREAM_BUFFER": str(n + 16)}
    cases = [
        ("localinfer", "json list", roomy, False),
        ("localinfer", "SSE", roomy, True),
        ("threaded", "json list (collected in the thread)", {}, False),
        ("localinfer", "json list, default stream_buffer=1024", {}, False),
        ("localinfer", "SSE, default stream_buffer=1024", {}, True),
    ]
    results = {}
    for name, label, env, sse in cases:
        log(f"[stream] {name}: {label}")
        with running_server(KINDS[name], "stream", pinning=pinning, env=env) as server:
            fetch_stream(server, 100, sse)  # warm up
            quiet.wait(server.pid)
            noise = ForeignLoad(server.pid)
            samples = [fetch_stream(server, n, sse) for _ in range(options.reps)]
            foreign = noise.cores()
        done = [s for s in samples if s["complete"]]
        results[f"{name}: {label}"] = {
            "items": n,
            "complete": f"{len(done)}/{len(samples)}",
            "us_per_item": statistics.median(s["us_per_item"] for s in done) if done else None,
            "received": [s["received"] for s in samples],
            "statuses": [s["status"] for s in samples],
            "foreign_cores": round(foreign, 3),
            "errors": sorted({s["error"] for s in samples if s["error"]}),
        }
    return results


def render(results: dict[str, Any]) -> str:
    inproc = results["in_process"]
    calls = markdown_table(
        ["crossing (worker thread → loop)", "thread side µs/item", "end to end µs/item"],
        [[name, fmt(v["thread_us_per_item"], 2), fmt(v["end_to_end_us_per_item"], 2)]
         for name, v in inproc["call_soon"].items()],
    )  # fmt: skip
    stream = inproc["job_stream"]
    trips = inproc["job_round_trip"]
    cut = inproc["job_stream_default_buffer"]
    cut_text = ", ".join(
        "complete" if r["error"] is None else f"cut off after {r['received']:,}" for r in cut
    )
    rows = [
        ["in process: job stream (reader does nothing else)", f"{stream['items']:,}",
         fmt(stream["us_per_item"], 2), f"{stream['items_per_s']:,.0f}",
         stream.get("complete", "-"), "-"],
    ]  # fmt: skip
    for label, v in results["http"].items():
        per = v["us_per_item"]
        rows.append([f"HTTP, {label}", f"{v['items']:,}", fmt(per, 2),
                     "-" if per is None else f"{1e6 / per:,.0f}", v["complete"],
                     fmt(v.get("foreign_cores"), 2)])  # fmt: skip
    items = markdown_table(["path", "items", "µs/item", "items/s", "complete", "others' CPU"], rows)
    trip_rows = markdown_table(
        ["no-op jobs in flight", "jobs/s", "µs/job"],
        [[c, fmt(v["jobs_per_s"], 0), fmt(v["us_per_job"], 1)] for c, v in trips.items()],
    )
    return (
        f"{calls}\n\n{items}\n\nIn process, default `stream_buffer` (1024), "
        f"{cut[0]['items']:,} items: {cut_text}.\n\n"
        f"The bridge without HTTP (submit a no-op job, await its result):\n\n{trip_rows}\n"
    )


def run(options: Options, pinning: Pinning | None = None) -> dict[str, Any]:
    pinning = pinning or default_pinning()
    pinning.pin_this_process_to_client()
    started = time.time()
    log("[stream] in process (crossing)")
    results: dict[str, Any] = {
        "benchmark": "stream_cost",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "pinning": asdict(pinning),
        "options": asdict(options),
        "in_process": in_process(options, pinning),
        "http": over_http(options, pinning),
    }
    results["wall_s"] = round(time.time() - started, 1)
    return results


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 small repeat: a smoke run")
    args = parser.parse_args(argv)
    return Options.quick() if args.quick else Options()


def main(argv: Sequence[str] | None = None) -> None:
    results = run(parse_options(argv))
    path = write_results("stream_cost", results)
    print(render(results))
    log(f"[stream] wrote {path} in {results['wall_s']} s")


if __name__ == "__main__":
    main()
