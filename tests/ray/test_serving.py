"""localinfer on Ray Serve, on a local Ray instance: the OpenAI SDK against two chat
replicas, streams and their cancellation, backpressure, a killed replica, autoscaling."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest

from tests.ray.conftest import API_KEY, CHAT, RayServed

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MESSAGES = [{"role": "user", "content": "Hello there"}]


def _stats(served: RayServed) -> dict[str, Any]:
    with served.http(timeout=10) as http:
        response = http.get("/v1/stats")
    response.raise_for_status()
    models: dict[str, Any] = response.json()["models"]
    return models


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_openai_sdk_on_two_chat_replicas(ray_served: RayServed) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{ray_served.url}/v1", api_key=API_KEY, max_retries=0)
    for _ in range(8):
        reply = client.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=6, temperature=0
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    for _ in range(8):
        stream = client.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=6, temperature=0, stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(pieces)

    def both_replicas_served() -> bool:
        replicas = _stats(ray_served)[CHAT]["replicas"]
        return len(replicas) == 2 and all(r["succeeded"] > 0 for r in replicas)

    _wait_for(both_replicas_served, 10, "both chat replicas to report requests served")
    stats = _stats(ray_served)[CHAT]
    assert stats["succeeded"] == 16
    assert all(r["devices"] for r in stats["replicas"])


def test_same_surface_on_ray(ray_served: RayServed) -> None:
    """The ingress is localinfer's app: its routes, checks and error bodies."""
    with ray_served.http() as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/ready").status_code == 200
        assert "localinfer_requests" in http.get("/metrics").text
        ids = {m["id"] for m in http.get("/v1/models").json()["data"]}
        assert {CHAT, "sleep", "busy", "ticks"} <= ids
        assert http.get("/v2/models/sleep").status_code == 200
        missing = http.post("/v1/infer/nope", json={"args": []})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        # DNS rebinding: a Host that is not the bind address is refused before any route
        assert http.get("/v1/models", headers={"Host": "evil.example"}).status_code == 400
        assert http.post("/v1/infer/sleep", json={"kwargs": {"seconds": 0.01}}).json() == {
            "slept": 0.01
        }


def test_stream_streams_and_cancels_on_its_replica(ray_served: RayServed) -> None:
    """``ticks`` is isolated: the stream and its cancellation cross a replica, then a pipe."""
    with ray_served.http() as http:
        metadata = http.get("/v2/models/ticks").json()  # the replica's definition says so
        cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert cards["ticks"]["engine"].endswith("(in a process of its own)")  # as its replica says
    assert metadata["parameters"]["capabilities"]["isolation"] == "process (nice)"
    body = {"kwargs": {"n": 400, "delay_s": 0.05}, "stream": True}
    before = _stats(ray_served)["ticks"]["replicas"][0]["cancelled"]
    started = time.monotonic()
    with (
        ray_served.http() as http,
        http.stream("POST", "/v1/infer/ticks", json=body) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in _take(response.iter_lines(), 3)]
    assert time.monotonic() - started < 10  # items arrived as made, not at the end (20 s)
    assert all(line.startswith("data: ") for line in lines)

    def cancelled_on_replica() -> bool:
        return bool(_stats(ray_served)["ticks"]["replicas"][0]["cancelled"] > before)

    _wait_for(cancelled_on_replica, 15, "the replica to cancel the abandoned stream")


def _take(lines: Any, count: int) -> list[str]:
    taken: list[str] = []
    for line in lines:
        if line:
            taken.append(line)
        if len(taken) == count:
            break
    return taken


def _sleep_requests(served: RayServed, count: int, seconds: float) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with served.http(timeout=60) as http:
            return http.post("/v1/infer/sleep", json={"kwargs": {"seconds": seconds}})

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_backpressure_answers_429_with_retry_after(ray_served: RayServed) -> None:
    responses = _sleep_requests(ray_served, 14, 1.5)
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 429}, codes
    refused = [r for r in responses if r.status_code == 429]
    assert refused, codes
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert refused[0].json()["error"]["type"] == "rate_limit_error"


def test_killed_replica_fails_only_its_requests(ray_served: RayServed) -> None:
    ray = pytest.importorskip("ray")
    from ray import serve

    def one(_: int) -> httpx.Response:
        with ray_served.http(timeout=60) as http:
            return http.post("/v1/infer/sleep", json={"kwargs": {"seconds": 3}})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one, i) for i in range(6)]
        time.sleep(1.5)  # 4 in flight (2 per replica), 2 waiting in Serve's router
        victim = _replica_actors(serve, ray_served.app, "model-sleep")[0]
        ray.kill(victim, no_restart=True)
        responses = [f.result(timeout=60) for f in futures]
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    lost = [r for r in responses if r.status_code == 503]
    assert len(lost) <= 2, codes  # at most what the killed replica held
    assert all(r.json()["error"]["code"] == "replica_lost" for r in lost)
    # the next requests succeed (on the survivor, then on the replacement)
    assert [r.status_code for r in _sleep_requests(ray_served, 4, 0.1)] == [200] * 4

    def replaced() -> bool:
        return _running_replicas(serve, ray_served.app, "model-sleep") == 2

    _wait_for(replaced, 90, "Serve to replace the killed replica")


def test_scales_from_one_to_two_replicas_under_load(ray_served: RayServed) -> None:
    from ray import serve

    assert _running_replicas(serve, ray_served.app, "model-busy") == 1
    stop = time.monotonic() + 120

    def load(_: int) -> list[int]:
        codes: list[int] = []
        with ray_served.http(timeout=60) as http:
            while time.monotonic() < stop:
                response = http.post("/v1/infer/busy", json={"kwargs": {"seconds": 0.5}})
                codes.append(response.status_code)
                if _running_replicas(serve, ray_served.app, "model-busy") >= 2:
                    break
        return codes

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = [code for codes in pool.map(load, range(4)) for code in codes]
    assert set(codes) == {200}, codes  # the load was real: every request served
    status = serve.status().applications[ray_served.app].deployments["model-busy"]
    assert _running_replicas(serve, ray_served.app, "model-busy") == 2, (len(codes), status)


def _running_replicas(serve: Any, app: str, deployment: str) -> int:
    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


def _replica_actors(serve: Any, app: str, deployment: str) -> list[Any]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    ]
    assert names, f"no replica actor named {prefix}*"
    return [ray.get_actor(name, namespace="serve") for name in names]


def test_multiplexed_models_share_a_replica(ray_served: RayServed) -> None:
    from ray import serve

    with ray_served.http(timeout=60) as http:
        for _ in range(2):  # each call swaps the other model out
            assert http.post("/v1/infer/echo", json={"args": ["hi"]}).json() == {"text": "hi"}
            body = {"args": [2], "kwargs": {"delay_s": 0.01}, "stream": True}
            streamed = http.post("/v1/infer/countdown", json=body).text
            assert "liftoff!" in streamed and "[DONE]" in streamed
    assert _running_replicas(serve, ray_served.app, "models-multiplexed") == 1


def test_concurrent_unary_requests_each_get_their_own_answer(ray_served: RayServed) -> None:
    """Unary jobs that pile up share handle calls (localinfer.ray.coalesce): every
    request still gets its own answer, and /v1/stats counts the calls and jobs."""
    before = _stats(ray_served)["echo"]["unary_calls"]

    def one(i: int) -> Any:
        with ray_served.http(timeout=60) as http:
            return http.post("/v1/infer/echo", json={"args": [f"text {i}"]}).json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(48)))
    assert answers == [{"text": f"text {i}"} for i in range(48)]
    after = _stats(ray_served)["echo"]["unary_calls"]
    jobs = after["jobs"] - before["jobs"]
    assert jobs == 48 and 1 <= after["calls"] - before["calls"] <= jobs
