"""The local Ray instance of the tests listens on loopback: every port a Ray process of
this session opens is on 127.0.0.1, except Serve's per-replica gRPC server (Ray binds it
to ``[::]``, hard-coded; docs/scale-out.md lists it)."""

from __future__ import annotations

import os

import psutil
import pytest

from tests.ray.conftest import RayServed

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _descendants_listening() -> list[tuple[int, str, str]]:
    """(pid, process title, address) of every listening TCP socket of this process's
    children, grandchildren and so on (the Ray instance it started)."""
    ours = {p.pid: p for p in psutil.Process(os.getpid()).children(recursive=True)}
    found = []
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status != psutil.CONN_LISTEN or connection.pid not in ours:
            continue
        try:
            title = " ".join(ours[connection.pid].cmdline())
        except psutil.Error:
            continue
        found.append((connection.pid, title, connection.laddr.ip))
    return found


def test_ray_listens_on_loopback_but_for_serve_replica_grpc(ray_served: RayServed) -> None:
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    listening = _descendants_listening()
    titles = " ".join(title for _, title, _ in listening)
    assert "gcs_server" in titles and "raylet" in titles and "ProxyActor" in titles
    replicas = {pid for pid, title, _ in listening if title.startswith("ray::ServeReplica")}
    outside = [(pid, title, ip) for pid, title, ip in listening if ip not in LOOPBACK]
    # nothing but one wildcard port per Serve replica (its inter-deployment gRPC server)
    assert all(pid in replicas and ip in {"::", "0.0.0.0"} for pid, _, ip in outside), outside
    assert len(outside) == len(replicas), outside
