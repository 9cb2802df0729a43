"""The Ray Serve path's cost and its gain.

- Overhead: the same model behind plain ``localinfer serve`` and behind
  ``localinfer serve --ray``, at 16 wrk clients: the no-op model (``/v1/infer``) and
  all-MiniLM embeddings (``/v1/embeddings``, the embedding cache off). Ratio = Ray /
  plain, same repeat. Ray layouts, through Serve's proxy: ``ray`` (the proxy -> the
  ingress replica -> the model's replica: three processes) and ``ray-ingress`` (the
  models set ``in_ingress``: the proxy -> the ingress replica, which runs them); with
  direct ingress (the ingress replicas answer HTTP on ``--port`` themselves, no proxy):
  ``ray-direct`` (models in the ingress), ``ray-direct-remote`` (models in replicas of
  their own: the ingress -> the model's replica) and ``ray-direct-x2`` (two ingress
  replicas on one port, each running the models).
- Gain: a pure-Python (GIL-bound) model on 2 replicas vs 1, on the Ray path.

Each repeat starts both servers fresh, unpinned (Ray's processes need the cores), one
after the other; wrk runs beside them. Results: bench/results/ray_overhead-latest.json.

    python -m bench.ray_overhead [--seconds 10] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
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
    served,
    write_results,
)
from bench.load import run_wrk
from bench.models import REQUEST_BODY
from bench.servers import request

CLIENTS = 16
EMBED_BODY = {"model": "all-minilm", "input": "The quick brown fox jumps over the lazy dog."}
SPIN_CLIENTS = 4
UNPINNED = Pinning(None, None)

#: on the Ray path: every replica reserves a tenth of a CPU (all fit on 2 cores), but
#: all-MiniLM two: Ray sets a replica's OMP_NUM_THREADS to floor(num_cpus), at least 1,
#: and plain ``localinfer serve`` runs torch on both cores
REPLICAS = {
    "*": {"num_cpus": 0.1, "max_ongoing_requests": 256, "max_queued_requests": -1},
    "all-minilm": {"num_cpus": 2, "max_ongoing_requests": 256, "max_queued_requests": -1},
    "spin2": {
        "num_cpus": 0.1,
        "min_replicas": 2,
        "max_replicas": 2,
        "max_ongoing_requests": 256,
        "max_queued_requests": -1,
    },
}
#: the no-op and the embeddings model run in the ingress's own process
IN_INGRESS = {
    "*": REPLICAS["*"],
    "noop": {"in_ingress": True, "num_cpus": 0},
    "all-minilm": {"in_ingress": True, "num_cpus": 2},  # the ingress: 2.5, 2 threads
}
ENV = {"LOCALINFER_EMBEDDING_CACHE_SIZE": "0", "LOCALINFER_MAX_QUEUE": "4096"}
#: through Serve's proxy (direct ingress is the default on a local instance)
PROXY = {"LOCALINFER_RAY_DIRECT_INGRESS": "0"}
DIRECT = {"LOCALINFER_RAY_DIRECT_INGRESS": "1"}


@contextmanager
def server(args: list[str], name: str, env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "localinfer", "serve", *args, "--port", str(port)]
    command += ["--device", "cpu", "--log-level", "warning"]
    with served(
        command,
        f"http://127.0.0.1:{port}",
        log_path=logs / f"ray_overhead-{name}.log",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **ENV, **env},
    ):
        yield port


def measure(port: int, path: str, body: object, clients: int, seconds: int) -> dict[str, Any]:
    status, answer = request(port, "POST", path, body, timeout_s=60)
    if status != 200:
        log(f"  {path} answered {status}: {answer[:300]!r}; not measured")
        return {"rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0, "non_2xx": 1}
    result = run_wrk(
        f"http://127.0.0.1:{port}{path}",
        body=body,
        connections=clients,
        seconds=seconds,
        pinning=UNPINNED,
    )
    if result.non_2xx:
        sample = _sample(port, path, body)
        log(f"  {path}: {result.non_2xx} non-2xx answers; one of 8 concurrent: {sample}")
    return {
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "non_2xx": result.non_2xx,
    }


def _sample(port: int, path: str, body: object) -> str:
    """What a failing request answers (status and the start of its body), for the log."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: request(port, "POST", path, body), range(8)))
    failed = [(status, text[:200]) for status, text in answers if status != 200]
    return repr(failed[0]) if failed else "all 200"


def one_repeat(seconds: int) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """The points of one repeat, and the 1-minute load average after each server's.

    Plain ``localinfer serve`` runs before and after the Ray layouts; ``plain/...`` is
    the mean of the two, so a load that changes during the repeat moves both sides."""
    points: dict[str, dict[str, Any]] = {}
    loads: dict[str, float] = {}
    models = ["bench.models:NoOp", "--models", "all-minilm"]

    def plain(when: str) -> None:
        with server(models, f"plain-{when}", {}) as port:
            log(f"plain localinfer serve ({when}): up")
            for key, path, body in (
                ("noop", "/v1/infer/noop", REQUEST_BODY),
                ("embed", "/v1/embeddings", EMBED_BODY),
            ):
                points[f"plain-{when}/{key}"] = measure(port, path, body, CLIENTS, seconds)
            loads[f"plain-{when}"] = os.getloadavg()[0]

    plain("before")
    spins = ["bench.ray_models:Spin1", "bench.ray_models:Spin2"]
    spin = {"args": [1]}
    layouts = (
        ("ray", REPLICAS, PROXY, True),
        ("ray-ingress", IN_INGRESS, PROXY, False),
        ("ray-direct", IN_INGRESS, DIRECT, False),
        ("ray-direct-remote", REPLICAS, DIRECT, False),
        ("ray-direct-x2", IN_INGRESS, {**DIRECT, "LOCALINFER_RAY_INGRESS_REPLICAS": "2"}, False),
    )
    for name, replicas, tuning, with_spins in layouts:
        ray_env = {"LOCALINFER_REPLICAS": json.dumps(replicas), **tuning}
        served = [*spins, *models] if with_spins else models
        # --ray last: its ADDRESS is optional, and would take the next word
        with server([*served, "--ray"], name, ray_env) as port:
            log(f"localinfer serve --ray ({name}): up")
            runs = [
                ("noop", "/v1/infer/noop", REQUEST_BODY, CLIENTS),
                ("embed", "/v1/embeddings", EMBED_BODY, CLIENTS),
            ]
            if with_spins:
                runs = [
                    ("spin x1", "/v1/infer/spin1", spin, SPIN_CLIENTS),
                    ("spin x2", "/v1/infer/spin2", spin, SPIN_CLIENTS),
                    *runs,
                ]
            for key, path, body, clients in runs:
                points[f"{name}/{key}"] = measure(port, path, body, clients, seconds)
            loads[name] = os.getloadavg()[0]
    plain("after")
    for key in ("noop", "embed"):
        both = [points[f"plain-{when}/{key}"] for when in ("before", "after")]
        points[f"plain/{key}"] = {
            "rps": round(sum(p["rps"] for p in both) / 2, 1),
            "p50_ms": median(p["p50_ms"] for p in both),
        }
    for key, point in points.items():
        log(
            f"  {key}: {point['rps']} req/s, p50 {point['p50_ms']} ms, "
            f"errors {point.get('errors')}, non-2xx {point.get('non_2xx')}"
        )
    log(f"  load average (1 min) after each server: {loads}")
    return points, loads


def summarise(repeats: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def ratio(numerator: str, denominator: str) -> float | None:
        return median(
            r[numerator]["rps"] / r[denominator]["rps"] if r[denominator]["rps"] else None
            for r in repeats
        )

    return {
        "noop_ray_over_plain": ratio("ray/noop", "plain/noop"),
        "embed_ray_over_plain": ratio("ray/embed", "plain/embed"),
        "spin_two_over_one": ratio("ray/spin x2", "ray/spin x1"),
        "noop_ingress_over_plain": ratio("ray-ingress/noop", "plain/noop"),
        "embed_ingress_over_plain": ratio("ray-ingress/embed", "plain/embed"),
        "noop_direct_over_plain": ratio("ray-direct/noop", "plain/noop"),
        "embed_direct_over_plain": ratio("ray-direct/embed", "plain/embed"),
        "noop_direct_remote_over_plain": ratio("ray-direct-remote/noop", "plain/noop"),
        "embed_direct_remote_over_plain": ratio("ray-direct-remote/embed", "plain/embed"),
        "noop_direct_x2_over_plain": ratio("ray-direct-x2/noop", "plain/noop"),
        "embed_direct_x2_over_plain": ratio("ray-direct-x2/embed", "plain/embed"),
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
        f"embeddings {fmt(summary['embed_ray_over_plain'], 2)}; models in the ingress: "
        f"{fmt(summary['noop_ingress_over_plain'], 2)}, "
        f"{fmt(summary['embed_ingress_over_plain'], 2)}; direct ingress, models in the "
        f"ingress: {fmt(summary['noop_direct_over_plain'], 2)}, "
        f"{fmt(summary['embed_direct_over_plain'], 2)}; direct, models in replicas: "
        f"{fmt(summary['noop_direct_remote_over_plain'], 2)}, "
        f"{fmt(summary['embed_direct_remote_over_plain'], 2)}; direct, 2 ingress replicas: "
        f"{fmt(summary['noop_direct_x2_over_plain'], 2)}, "
        f"{fmt(summary['embed_direct_x2_over_plain'], 2)}; GIL-bound model, 2 "
        f"replicas / 1 at {SPIN_CLIENTS} clients: {fmt(summary['spin_two_over_one'], 2)}"
    )
    return f"{table}\n\n{ratios}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=2)
    options = parser.parse_args()
    runs = [one_repeat(options.seconds) for _ in range(options.reps)]
    repeats = [points for points, _ in runs]
    summary = summarise(repeats)
    path = write_results(
        "ray_overhead",
        {
            "machine": machine(),
            "repeats": repeats,
            "load_average": [loads for _, loads in runs],
            "summary": summary,
            "clients": CLIENTS,
        },
    )
    print(report(summary))
    log(f"results: {path}")


if __name__ == "__main__":
    main()
