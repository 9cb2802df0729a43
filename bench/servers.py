"""Start and stop the servers under test, each in its own process on the server core.

Every server gets the same model name, route and body, a free loopback port, and the
same CPU; :func:`bench.common.served` starts it, waits until it is ready and stops its
whole process group (LitServe spawns worker processes), so nothing outlives a run.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import RESULTS_DIR, ROOT, Pinning, free_port, served
from bench.models import PAYLOAD, REQUEST_BODY
from bench.serving import MODELS


@dataclass(frozen=True)
class ServerKind:
    """One implementation under test."""

    name: str
    #: the module run with ``python -m``; ``localinfer`` means its own CLI
    module: str
    ready_path: str
    models: frozenset[str]
    description: str
    log_level: str = "warning"
    #: how long SIGTERM gets before SIGKILL (LitServe 0.2.19 ignores both INT and TERM here)
    stop_grace_s: float = 8.0

    def command(self, model: str, workers: int, port: int) -> list[str]:
        if self.module == "localinfer":
            return [
                sys.executable, "-m", "localinfer", "serve",
                f"bench.models:{MODELS[model].__name__}",
                "--port", str(port), "--workers", str(workers), "--device", "cpu",
                "--log-level", self.log_level,
            ]  # fmt: skip
        return [
            sys.executable, "-m", self.module,
            "--port", str(port), "--model", model, "--workers", str(workers),
        ]  # fmt: skip


ALL_MODELS = frozenset(MODELS)

KINDS: dict[str, ServerKind] = {
    kind.name: kind
    for kind in (
        ServerKind("bare", "bench.bare", "/health", frozenset({"noop"}),
                   "starlette on hypercorn, the handler answers inline: the limit"),
        ServerKind("localinfer", "localinfer", "/ready", ALL_MODELS,
                   "localinfer serve (worker threads, job queue, bridge), --log-level warning"),
        ServerKind("localinfer-info", "localinfer", "/ready", ALL_MODELS,
                   "localinfer serve with its default --log-level info (a log line per request)",
                   log_level="info"),
        ServerKind("hop", "bench.peers.hop", "/health", ALL_MODELS,
                   "bare + the cheapest worker-thread hop (SimpleQueue in, call_soon_threadsafe "
                   "out): the floor of any design that runs models in threads"),
        ServerKind("threaded", "bench.peers.threaded", "/health", ALL_MODELS,
                   "starlette on hypercorn + anyio.to_thread.run_sync (CapacityLimiter = workers)"),
        ServerKind("litserve", "bench.peers.litserve_api", "/health", ALL_MODELS,
                   "LitServe 0.2 (FastAPI on uvicorn, worker processes), 1 API server",
                   stop_grace_s=2.0),
    )
}  # fmt: skip


@dataclass(frozen=True)
class RunningServer:
    kind: ServerKind
    model: str
    port: int
    pid: int

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def infer_path(self) -> str:
        return f"/v1/infer/{self.model}"


def request(
    port: int, method: str, path: str, body: object = None, timeout_s: float = 10.0
) -> tuple[int, bytes]:
    """One HTTP request on a fresh connection (readiness and sanity checks only)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        data = None if body is None else json.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, data, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check_answer(server: RunningServer) -> None:
    """Fail early if a server answers the benchmark request wrongly: speed of errors is no speed."""
    status, body = request(server.port, "POST", server.infer_path, REQUEST_BODY)
    if status != 200 or json.loads(body) != PAYLOAD:
        raise RuntimeError(f"{server.kind.name} answered {status} {body[:200]!r}")


@contextmanager
def running_server(
    kind: ServerKind,
    model: str,
    *,
    pinning: Pinning,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 90.0,
) -> Iterator[RunningServer]:
    """Serve ``model`` with ``kind`` on a free port for the duration of the block."""
    if model not in kind.models:
        raise ValueError(f"{kind.name} cannot serve {model}")
    port = free_port()
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with served(
        pinning.server_prefix() + kind.command(model, workers, port),
        f"http://127.0.0.1:{port}",
        ready_path=kind.ready_path,
        timeout_s=ready_timeout_s,
        log_path=logs / f"{kind.name}-{model}.log",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        grace_s=kind.stop_grace_s,
        quiet_stop=kind.name == "litserve",
    ) as process:
        yield RunningServer(kind, model, port, process.pid)
