"""One local Ray instance (loopback only, no dashboard) and one localinfer application
on Ray Serve, shared by the ``ray`` tests of a session.

Replicas are other processes: they import this checkout (``PYTHONPATH`` in the job's
``runtime_env``), so a fresh clone tests its own code, not an installed copy.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from localinfer.ray.local import loopback_environment, start_local_ray

loopback_environment()  # before any test module imports Ray

ROOT = Path(__file__).resolve().parents[2]
APP = "localinfer"
DIRECT_APP = "localinfer-direct"
CHAT = "tiny-chat"
#: the app requires it; it reaches the ingress by the environment, not Serve's arguments
API_KEY = "ray-test-key-4d1f0c"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RayServed:
    url: str
    app: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def http(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)


def ray_replica_settings() -> dict[str, Any]:
    small = {"num_cpus": 0.25}
    return {
        "*": {**small, "min_replicas": 1, "max_replicas": 1},
        CHAT: {**small, "min_replicas": 2, "max_replicas": 2},
        # 2 replicas x 2 requests each in flight, 4 more wait in Serve's router, then 429
        "sleep": {
            **small,
            "min_replicas": 2,
            "max_replicas": 2,
            "max_ongoing_requests": 2,
            "max_queued_requests": 4,
        },
        # runs in the ingress's own process
        "where": {"in_ingress": True, "num_cpus": 0},
        "busy": {
            **small,
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1,
            "max_ongoing_requests": 4,
        },
    }


@pytest.fixture(scope="session")
def ray_served(tiny_llama_dir: Path) -> Iterator[RayServed]:
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from localinfer.ray import build_app

    # Ray's processes inherit the environment of the one that starts the instance; the
    # key is taken back at once, so the servers of later tests in this process need none
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LOCALINFER_API_KEY", API_KEY)
        start_local_ray(
            num_cpus=8,  # logical: replicas reserve a quarter each; the machine has what it has
            runtime_env={"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}},
            namespace="localinfer-tests",
            log_to_driver=False,
        )
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(
            {
                "models": [f"{CHAT}={tiny_llama_dir}"],
                "targets": [
                    "tests.ray.models:Sleep",
                    "tests.ray.models:Busy",
                    "tests.ray.models:Ticks",
                    "tests.ray.models:Where",
                    "localinfer.examples.demo:Echo",
                    "localinfer.examples.demo:Countdown",
                ],
                # both on one replica that holds one of them at a time
                "multiplexed": ["echo", "countdown"],
                "models_per_replica": 1,
                # ticks runs in a process of its own inside its replica (--isolate)
                "settings": {
                    "replicas": ray_replica_settings(),
                    "request_timeout_s": 60,
                    "isolate": ["ticks"],
                },
                "ingress_num_cpus": 0.25,
                "api_key_required": True,
            }
        )
        serve.run(app, name=APP, route_prefix="/")
        yield RayServed(url=f"http://127.0.0.1:{port}", app=APP)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def ray_direct(ray_served: RayServed) -> Iterator[RayServed]:
    """A second application on the same instance, answered directly: two ingress
    replicas share one port (``ray_direct_ingress``); ``where`` runs in them, ``ticks``
    in a replica of its own."""
    from ray import serve

    from localinfer.ray import build_app

    port = _free_port()
    app = build_app(
        {
            "targets": ["tests.ray.models:Where", "tests.ray.models:Ticks"],
            "settings": {
                "host": "127.0.0.1",
                "port": port,
                "ray_direct_ingress": True,
                "replicas": {
                    "*": {"num_cpus": 0.25},
                    "where": {"in_ingress": True, "num_cpus": 0},
                },
            },
            "ingress_replicas": 2,
            "ingress_num_cpus": 0.25,
            "api_key_required": True,
        }
    )
    serve.run(app, name=DIRECT_APP, route_prefix="/direct")
    try:
        yield RayServed(url=f"http://127.0.0.1:{port}", app=DIRECT_APP)
    finally:
        serve.delete(DIRECT_APP)
