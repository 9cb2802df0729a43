"""Bridge overhead: a no-op model behind localinfer vs bare starlette, and vs peers.

Every server runs in its own process pinned to the server core and answers
``POST /v1/infer/noop`` with the body's first argument; wrk drives it from the other
core at 1, 16 and 64 keep-alive clients. The bare server is the limit: the ratio
localinfer/bare is what the queue, the worker thread and the result's trip back cost.
A second workload (a handler that sleeps 20 ms, 2 workers, 16 clients; ideal 100
req/s) shows how well each server keeps its workers busy.

Run: ``python -m bench.bridge_overhead [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import (
    Pinning,
    default_pinning,
    fmt,
    log,
    machine,
    markdown_table,
    median,
    rotated,
    write_results,
)
from bench.load import run_wrk
from bench.models import REQUEST_BODY
from bench.noise import ForeignLoad, QuietWindow
from bench.servers import KINDS, RunningServer, check_answer, running_server

NOOP_SERVERS = ("bare", "hop", "localinfer", "localinfer-info", "threaded", "litserve")
SLEEP_SERVERS = ("localinfer", "threaded", "litserve")


@dataclass(frozen=True)
class Options:
    reps: int = 3
    seconds: int = 3
    warmup_seconds: int = 1
    clients: tuple[int, ...] = (1, 16, 64)
    servers: tuple[str, ...] = NOOP_SERVERS
    sleep_servers: tuple[str, ...] = SLEEP_SERVERS
    sleep_s: float = 0.02
    sleep_workers: int = 2
    sleep_clients: int = 16
    #: a point during which other processes used more CPU than this is measured again
    max_foreign_cores: float = 0.15
    #: seconds this run may spend waiting for quiet moments and re-measuring
    quiet_budget_s: float = 60.0

    @classmethod
    def quick(cls) -> Options:
        return cls(reps=1, seconds=1, warmup_seconds=1, quiet_budget_s=20.0)


def measure_point(
    server: RunningServer, clients: int, options: Options, pinning: Pinning, quiet: QuietWindow
) -> dict[str, Any]:
    """One wrk run in a quiet moment; once more if others used the CPU meanwhile anyway.

    Keeps the quieter attempt, with its foreign load and the number of attempts made.
    """
    best: dict[str, Any] = {}
    attempts = 0
    while True:
        attempts += 1
        quiet.wait(server.pid)
        noise = ForeignLoad(server.pid)
        result = run_wrk(server.url + server.infer_path, body=REQUEST_BODY,
                         connections=clients, seconds=options.seconds, pinning=pinning)  # fmt: skip
        point = {**result.to_dict(), "foreign_cores": round(noise.cores(), 3)}
        if not best or point["foreign_cores"] < best["foreign_cores"]:
            best = point
        if quiet.quiet(point["foreign_cores"]) or attempts > 1:
            break
        if not quiet.may_retry(options.seconds):
            break
        log(f"  others used {point['foreign_cores']:.2f} cores meanwhile: measuring again")
    return {**best, "attempts": attempts}


def measure(options: Options, pinning: Pinning, quiet: QuietWindow) -> list[dict[str, Any]]:
    """All raw points: one per (repeat, workload, server, clients)."""
    runs: list[dict[str, Any]] = []
    for rep in range(options.reps):
        for name in rotated(options.servers, rep):
            kind = KINDS[name]
            log(f"[bridge] rep {rep + 1}/{options.reps}: {name} noop")
            with running_server(kind, "noop", pinning=pinning) as server:
                check_answer(server)
                run_wrk(server.url + server.infer_path, body=REQUEST_BODY, connections=16,
                        seconds=options.warmup_seconds, pinning=pinning)  # fmt: skip
                for clients in options.clients:
                    point = measure_point(server, clients, options, pinning, quiet)
                    runs.append({"rep": rep, "workload": "noop", "server": name,
                                 "workers": 1, **point})  # fmt: skip
        for name in rotated(options.sleep_servers, rep):
            log(f"[bridge] rep {rep + 1}/{options.reps}: {name} sleep {options.sleep_s * 1e3:g} ms")
            env = {"BENCH_SLEEP_S": str(options.sleep_s)}
            with running_server(KINDS[name], "sleep", pinning=pinning,
                                workers=options.sleep_workers, env=env) as server:  # fmt: skip
                run_wrk(server.url + server.infer_path, body=REQUEST_BODY,
                        connections=options.sleep_clients, seconds=options.warmup_seconds,
                        pinning=pinning)  # fmt: skip
                point = measure_point(server, options.sleep_clients, options, pinning, quiet)
                runs.append({"rep": rep, "workload": "sleep", "server": name,
                             "workers": options.sleep_workers, **point})  # fmt: skip
    return runs


def _point(runs: list[dict[str, Any]], workload: str, server: str, clients: int, rep: int
           ) -> dict[str, Any] | None:  # fmt: skip
    for run in runs:
        if (run["workload"], run["server"], run["connections"], run["rep"]) == (
            workload, server, clients, rep,
        ):  # fmt: skip
            return run
    return None


def _ratio(runs: list[dict[str, Any]], workload: str, server: str, baseline: str,
           clients: int, reps: int) -> float | None:  # fmt: skip
    """Median over repeats of rps(server)/rps(baseline), each pair from the same repeat."""
    ratios = []
    for rep in range(reps):
        a = _point(runs, workload, server, clients, rep)
        b = _point(runs, workload, baseline, clients, rep)
        if a and b and b["rps"] > 0:
            ratios.append(a["rps"] / b["rps"])
    return median(ratios)


def summarize(runs: list[dict[str, Any]], options: Options) -> dict[str, list[dict[str, Any]]]:
    """Medians over repeats, plus same-repeat ratios against bare and against localinfer."""
    summary: dict[str, list[dict[str, Any]]] = {"noop": [], "sleep": []}
    workloads = (
        ("noop", options.servers, options.clients),
        ("sleep", options.sleep_servers, (options.sleep_clients,)),
    )
    for workload, servers, clients_list in workloads:
        for server in servers:
            for clients in clients_list:
                points = [
                    p for rep in range(options.reps)
                    if (p := _point(runs, workload, server, clients, rep))
                ]  # fmt: skip
                if not points:
                    continue
                summary[workload].append({
                    "server": server,
                    "clients": clients,
                    "rps": median(p["rps"] for p in points),
                    "p50_ms": median(p["p50_ms"] for p in points),
                    "p99_ms": median(p["p99_ms"] for p in points),
                    "errors": sum(p["errors"] + p["non_2xx"] for p in points),
                    "foreign_cores": median(p["foreign_cores"] for p in points),
                    "vs_bare": _ratio(runs, workload, server, "bare", clients, options.reps),
                    "vs_localinfer": _ratio(
                        runs, workload, server, "localinfer", clients, options.reps
                    ),
                })  # fmt: skip
    return summary


def render(results: dict[str, Any]) -> str:
    """The two tables of this benchmark, as markdown."""
    options = results["options"]
    noop = markdown_table(
        ["server", "clients", "req/s", "p50 ms", "p99 ms", "vs bare", "vs localinfer", "errors",
         "others' CPU"],
        [
            [row["server"], str(row["clients"]), fmt(row["rps"], 0), fmt(row["p50_ms"], 2),
             fmt(row["p99_ms"], 2), fmt(row["vs_bare"], 2), fmt(row["vs_localinfer"], 2),
             str(row["errors"]), fmt(row.get("foreign_cores"), 2)]
            for row in results["summary"]["noop"]
        ],
    )  # fmt: skip
    ideal = options["sleep_workers"] / options["sleep_s"]
    sleep = markdown_table(
        ["server", "clients", "workers", "req/s", "of ideal", "p50 ms", "p99 ms", "vs localinfer",
         "errors", "others' CPU"],
        [
            [row["server"], str(row["clients"]), str(options["sleep_workers"]),
             fmt(row["rps"], 1), f"{row['rps'] / ideal:.0%}", fmt(row["p50_ms"], 1),
             fmt(row["p99_ms"], 1), fmt(row["vs_localinfer"], 2), str(row["errors"]),
             fmt(row.get("foreign_cores"), 2)]
            for row in results["summary"]["sleep"]
        ],
    )  # fmt: skip
    return (
        f"No-op model, 1 worker, median of {options['reps']} repeats of {options['seconds']} s "
        "per point; `vs bare` and `vs localinfer` are req/s ratios taken within each repeat:"
        f"\n\n{noop}\n\n"
        f"Sleep model ({options['sleep_s'] * 1e3:g} ms per request, "
        f"{options['sleep_workers']} workers, ideal {ideal:g} req/s):\n\n{sleep}\n"
    )


def run(options: Options, pinning: Pinning | None = None) -> dict[str, Any]:
    pinning = pinning or default_pinning()
    pinning.pin_this_process_to_client()
    started = time.time()
    quiet = QuietWindow(options.quiet_budget_s, options.max_foreign_cores)
    runs = measure(options, pinning, quiet)
    results = {
        "benchmark": "bridge_overhead",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
        "pinning": asdict(pinning),
        "options": asdict(options),
        "servers": {name: KINDS[name].description for name in options.servers},
        "quiet": quiet.report(),
        "runs": runs,
    }
    results["summary"] = summarize(runs, options)
    return results


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 1 s: a smoke run")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--seconds", type=int, help="length of each measurement")
    parser.add_argument("--servers", help=f"comma list from {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    options = Options.quick() if args.quick else Options()
    changes: dict[str, Any] = {}
    if args.reps:
        changes["reps"] = args.reps
    if args.seconds:
        changes["seconds"] = args.seconds
    if args.servers:
        chosen = tuple(args.servers.split(","))
        changes["servers"] = chosen
        changes["sleep_servers"] = tuple(s for s in chosen if s != "bare")
    return Options(**{**asdict(options), **changes})


def main(argv: Sequence[str] | None = None) -> None:
    results = run(parse_options(argv))
    path = write_results("bridge_overhead", results)
    print(render(results))
    log(f"[bridge] wrote {path} in {results['wall_s']} s")


if __name__ == "__main__":
    main()
