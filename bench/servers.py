"""Start and stop the servers under test, each in its own process on the server core.

Every server gets the same model name, route and body, a free loopback port, and the
same CPU. A server is stopped with SIGTERM to its process group (LitServe spawns
worker processes), then SIGKILL if it lingers, so nothing outlives a run.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import RESULTS_DIR, ROOT, Pinning, free_port, log
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


def _wait_ready(process: subprocess.Popen[bytes], port: int, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            status, _ = request(port, "GET", path, timeout_s=2.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server not ready on port {port} after {timeout_s:.0f} s")


def check_answer(server: RunningServer) -> None:
    """Fail early if a server answers the benchmark request wrongly: speed of errors is no speed."""
    status, body = request(server.port, "POST", server.infer_path, REQUEST_BODY)
    if status != 200 or json.loads(body) != PAYLOAD:
        raise RuntimeError(f"{server.kind.name} answered {status} {body[:200]!r}")


def _stop(process: subprocess.Popen[bytes], grace_s: float, quiet: bool = False) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after ``grace_s``."""
    group = process.pid  # started with start_new_session: its pid is its group id
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    if not quiet:
        log(f"  server group {group} still alive after {grace_s:g} s: SIGKILL")
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


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
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = pinning.server_prefix() + kind.command(model, workers, port)
    with open(logs / f"{kind.name}-{model}.log", "wb") as output:
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
            _wait_ready(process, port, kind.ready_path, ready_timeout_s)
            yield RunningServer(kind, model, port, process.pid)
        finally:
            _stop(process, kind.stop_grace_s, quiet=kind.name == "litserve")
