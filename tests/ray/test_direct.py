"""Direct ingress on a local Ray instance: two ingress replicas answer on one port, a
stream from a model replica crosses it, one x-request-id per response on both paths,
and a killed ingress replica leaves the port to the other until Serve restarts it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.ray.conftest import RayServed

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _ingress_of_new_connections(served: RayServed, n: int) -> list[str]:
    """The ingress actor that answered each of ``n`` fresh connections (``where`` runs in
    the ingress that took the connection)."""
    actors = []
    for _ in range(n):
        with served.http(timeout=10) as http:  # a new client: a new connection
            answer = http.post("/v1/infer/where", json={})
        assert answer.status_code == 200, answer.text
        actors.append(str(answer.json()["actor"]))
    return actors


def test_two_ingress_replicas_share_the_port(ray_direct: RayServed) -> None:
    import psutil

    actors = _ingress_of_new_connections(ray_direct, 24)
    assert all("#ingress#" in actor for actor in actors), actors
    assert len(set(actors)) == 2, actors  # the kernel spread the connections over both
    port = int(ray_direct.url.rsplit(":", 1)[1])
    listening = [
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    # one socket per replica: the server did not start the app (and itself) once more
    assert len(listening) == 2 and len(set(listening)) == 2, listening


def test_a_model_replica_streams_through_direct_ingress(ray_direct: RayServed) -> None:
    with ray_direct.http() as http:
        assert http.get("/v1/models").status_code == 200
        assert httpx.get(f"{ray_direct.url}/v1/models", timeout=10).status_code == 401  # no key
        with http.stream(
            "POST", "/v1/infer/ticks", json={"kwargs": {"n": 3}, "stream": True}
        ) as response:
            assert response.status_code == 200
            body = "".join(response.iter_text())
    assert all(f"tick {i}" in body for i in range(3)), body


@pytest.mark.parametrize("path", ["proxy", "direct"])
def test_one_request_id_per_response(
    path: str, ray_served: RayServed, ray_direct: RayServed
) -> None:
    served = ray_served if path == "proxy" else ray_direct
    with served.http() as http:
        given = http.get("/v1/models", headers={"x-request-id": "client-id-42"})
        made = http.get("/v1/models")
        failed = http.post("/v1/infer/where", json={"bad": 1}, headers={"x-request-id": "c-7"})
    assert given.headers.get_list("x-request-id") == ["client-id-42"]  # the caller's, once
    assert len(made.headers.get_list("x-request-id")) == 1
    assert failed.status_code == 422, failed.text  # an error answer is no different
    assert failed.headers.get_list("x-request-id") == ["c-7"]


def test_a_killed_ingress_replica_leaves_the_port_to_the_other(ray_direct: RayServed) -> None:
    import ray

    victim = _ingress_of_new_connections(ray_direct, 1)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    time.sleep(0.5)
    survivors = _ingress_of_new_connections(ray_direct, 12)
    assert victim not in survivors and len(set(survivors)) == 1, survivors
    # Serve replaces the dead replica, whose successor binds the same port again
    deadline = time.monotonic() + 60
    while len(set(_ingress_of_new_connections(ray_direct, 12)) - {victim}) < 2:
        assert time.monotonic() < deadline, "the ingress replica was not replaced"
        time.sleep(1)
