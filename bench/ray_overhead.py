"""The Ray Serve path's cost and its gain.

- Overhead: the same model behind plain ``localinfer serve`` and behind
  ``localinfer serve --ray`` (Serve's proxy -> the ingress replica -> the model replica),
  at 16 wrk clients: the no-op model (``/v1/infer``) and all-MiniLM embeddings
  (``/v1/embeddings``, the embedding cache off). Ratio = Ray / plain, same repeat.
- Gain: a pure-Python (GIL-bound) model on 2 replicas vs 1, on the Ray path.

Each repeat starts both servers fresh, unpinned (Ray's processes need the cores), one
after the other; wrk runs beside them. Results: bench/results/ray_overhead-latest.json.

    python -m bench.ray_overhead [--seconds 10] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import (
    RESULTS_DIR,
    ROOT,
    Pinning,
    fmt,
    free_port,
    log,
    machine,
    markdown_table,
    median,
    write_results,
)
from bench.load import run_wrk
from bench.models import REQUEST_BODY
from bench.servers import _stop, _wait_ready

CLIENTS = 16
EMBED_BODY = {"model": "all-minilm", "input": "The quick brown fox jumps over the lazy dog."}
SPIN_CLIENTS = 4
UNPINNED = Pinning(None, None)

#: on the Ray path: every replica reserves a tenth of a CPU (all fit on 2 cores)
REPLICAS = {
    "*": {"num_cpus": 0.1, "max_ongoing_requests": 256, "max_queued_requests": -1},
    "spin2": {
        "num_cpus": 0.1,
        "min_replicas": 2,
        "max_replicas": 2,
        "max_ongoing_requests": 256,
        "max_queued_requests": -1,
    },
}
ENV = {"LOCALINFER_EMBEDDING_CACHE_SIZE": "0", "LOCALINFER_MAX_QUEUE": "4096"}


@contextmanager
def server(args: list[str], name: str, env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "localinfer", "serve", *args, "--port", str(port)]
    command += ["--device", "cpu", "--log-level", "warning"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **ENV, **env}
    with open(logs / f"ray_overhead-{name}.log", "wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_ready(process, port, "/ready", 300.0)
            yield port
        finally:
            _stop(process, 30.0)


def measure(port: int, path: str, body: object, clients: int, seconds: int) -> dict[str, Any]:
    result = run_wrk(
        f"http://127.0.0.1:{port}{path}",
        body=body,
        connections=clients,
        seconds=seconds,
        pinning=UNPINNED,
    )
    return {
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "non_2xx": result.non_2xx,
    }


def one_repeat(seconds: int) -> dict[str, dict[str, Any]]:
    points: dict[str, dict[str, Any]] = {}
    models = ["bench.models:NoOp", "--models", "all-minilm"]
    with server(models, "plain", {}) as port:
        log("plain localinfer serve: up")
        points["plain/noop"] = measure(port, "/v1/infer/noop", REQUEST_BODY, CLIENTS, seconds)
        points["plain/embed"] = measure(port, "/v1/embeddings", EMBED_BODY, CLIENTS, seconds)
    spins = ["bench.ray_models:Spin1", "bench.ray_models:Spin2"]
    ray_env = {"LOCALINFER_REPLICAS": json.dumps(REPLICAS)}
    # --ray last: its ADDRESS is optional, and would take the next word
    with server([*spins, *models, "--ray"], "ray", ray_env) as port:
        log("localinfer serve --ray: up")
        points["ray/noop"] = measure(port, "/v1/infer/noop", REQUEST_BODY, CLIENTS, seconds)
        points["ray/embed"] = measure(port, "/v1/embeddings", EMBED_BODY, CLIENTS, seconds)
        spin_body = {"args": [1]}
        points["ray/spin x1"] = measure(port, "/v1/infer/spin1", spin_body, SPIN_CLIENTS, seconds)
        points["ray/spin x2"] = measure(port, "/v1/infer/spin2", spin_body, SPIN_CLIENTS, seconds)
    for key, point in points.items():
        log(f"  {key}: {point['rps']} req/s, p50 {point['p50_ms']} ms, errors {point['errors']}")
    return points


def summarise(repeats: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def ratio(numerator: str, denominator: str) -> float | None:
        return median(r[numerator]["rps"] / r[denominator]["rps"] for r in repeats)

    return {
        "noop_ray_over_plain": ratio("ray/noop", "plain/noop"),
        "embed_ray_over_plain": ratio("ray/embed", "plain/embed"),
        "spin_two_over_one": ratio("ray/spin x2", "ray/spin x1"),
        "rps": {key: median(r[key]["rps"] for r in repeats) for key in repeats[0]},
        "p50_ms": {key: median(r[key]["p50_ms"] for r in repeats) for key in repeats[0]},
    }


def report(summary: dict[str, Any]) -> str:
    rows = [
        [key, fmt(summary["rps"][key]), fmt(summary["p50_ms"][key], 2)] for key in summary["rps"]
    ]
    table = markdown_table(["server/model", "req/s (median)", "p50 ms"], rows)
    ratios = (
        f"Ray / plain at {CLIENTS} clients: no-op {fmt(summary['noop_ray_over_plain'], 2)}, "
        f"embeddings {fmt(summary['embed_ray_over_plain'], 2)}; GIL-bound model, 2 replicas / 1 "
        f"at {SPIN_CLIENTS} clients: {fmt(summary['spin_two_over_one'], 2)}"
    )
    return f"{table}\n\n{ratios}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=2)
    options = parser.parse_args()
    repeats = [one_repeat(options.seconds) for _ in range(options.reps)]
    summary = summarise(repeats)
    path = write_results(
        "ray_overhead",
        {"machine": machine(), "repeats": repeats, "summary": summary, "clients": CLIENTS},
    )
    print(report(summary))
    log(f"results: {path}")


if __name__ == "__main__":
    main()
