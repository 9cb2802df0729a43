"""POST /v1/infer/{model} against a live server: results, streams and every failure path."""

from __future__ import annotations

import json
import logging
import time

import anyio
import httpx
import pytest

from tests import models
from tests.support import define, running_server, server_timing, wait_until

pytestmark = pytest.mark.anyio


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


async def test_json_result_with_args_and_kwargs() -> None:
    async with running_server([define(models.Echo)]) as client:
        r = await client.post("/v1/infer/echo", json={"args": ["ab"], "kwargs": {"repeat": 3}})
        assert r.status_code == 200
        body = r.json()
        assert body["text"] == "ababab"
        # built and called inside the dedicated worker thread, on its device
        assert body["thread"].startswith("localinfer:echo:")
        assert body["built_in"] == body["thread"]
        assert body["device"] == "cpu"
        timing = server_timing(r.headers)
        assert timing["queue"] >= 0 and timing["run"] >= 0


async def test_request_id_is_generated_or_echoed() -> None:
    async with running_server([define(models.Echo)]) as client:
        r = await client.post("/v1/infer/echo", json={"args": ["x"]})
        assert len(r.headers["x-request-id"]) == 32  # 16 random hex + 16 counter hex
        r = await client.post(
            "/v1/infer/echo", json={"args": ["x"]}, headers={"x-request-id": "my-trace-42"}
        )
        assert r.headers["x-request-id"] == "my-trace-42"
        r = await client.get("/nope", headers={"x-request-id": "bad id\twith tab"})
        assert r.status_code == 404
        assert r.headers["x-request-id"] != "bad id\twith tab"
        assert r.json()["error"]["code"] == "not_found"


async def test_text_generator_streams_as_sse() -> None:
    async with running_server([define(models.Words)]) as client:
        r = await client.post("/v1/infer/words", json={"args": [4], "stream": True})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_data(r.text)
        assert events[-1] == "[DONE]"
        assert [json.loads(e) for e in events[:-1]] == ["w0 ", "w1 ", "w2 ", "w3 "]


async def test_text_generator_collected_when_stream_false() -> None:
    async with running_server([define(models.Words)]) as client:
        r = await client.post("/v1/infer/words", json={"args": [3], "stream": False})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == "w0 w1 w2 "


async def test_bytes_generator_streams_as_chunked_binary() -> None:
    async with running_server([define(models.Bytes)]) as client:
        async with client.stream("POST", "/v1/infer/bytes", json={"kwargs": {"n": 3}}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "audio/wav"
            assert r.headers.get("transfer-encoding") == "chunked"
            data = b"".join([chunk async for chunk in r.aiter_bytes()])
        assert data == b"\x00" * 1000 + b"\x01" * 1000 + b"\x02" * 1000


async def test_argument_mismatch_is_422_with_the_message() -> None:
    Echo = models.Echo
    async with running_server([define(Echo)]) as client:
        for body, fragment in [
            ({"args": []}, "missing a required argument: 'text'"),
            ({"args": ["a", 2, 3]}, "too many positional arguments"),
            ({"kwargs": {"text": "a", "colour": "red"}}, "unexpected keyword argument 'colour'"),
            ({"args": "a"}, "'args' must be a JSON array"),
            ({"kwargs": []}, "'kwargs' must be a JSON object"),
            ({"arg": ["a"]}, "unknown field(s) arg"),
            ([1, 2], "must be a JSON object"),
        ]:
            r = await client.post("/v1/infer/echo", json=body)
            assert r.status_code == 422, body
            error = r.json()["error"]
            assert fragment in error["message"], (body, error)
            assert error["type"] == "invalid_request_error"
            assert error["code"] == "invalid_arguments"


async def test_factory_targets_are_bound_in_the_worker() -> None:
    async with running_server([define(models.make_echo, name="echo")]) as client:
        ok = await client.post("/v1/infer/echo", json={"args": ["x"]})
        assert ok.json()["text"] == "x"
        bad = await client.post("/v1/infer/echo", json={"args": ["x", 1, 2]})
        assert bad.status_code == 422
        assert "too many positional arguments" in bad.json()["error"]["message"]


async def test_bad_bodies_and_unknown_model() -> None:
    async with running_server([define(models.Echo)], max_body_bytes=2048) as client:
        r = await client.post("/v1/infer/missing", json={})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found"
        assert "echo" in r.json()["error"]["message"]
        r = await client.post(
            "/v1/infer/echo", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        r = await client.post(
            "/v1/infer/echo",
            content=b"args=1",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415
        r = await client.post("/v1/infer/echo", json={"args": ["x" * 5000]})
        assert r.status_code == 413 and "2048" in r.json()["error"]["message"]
        r = await client.get("/v1/infer/echo")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_handler_exception_fails_only_its_request(caplog: pytest.LogCaptureFixture) -> None:
    async with running_server([define(models.Flaky)]) as client:
        with caplog.at_level(logging.ERROR, logger="localinfer"):
            r = await client.post(
                "/v1/infer/flaky",
                json={"kwargs": {"fail": True}},
                headers={"x-request-id": "req-boom-1"},
            )
        assert r.status_code == 500
        error = r.json()["error"]
        assert error == {
            "message": "ValueError: boom: bad luck",
            "type": "server_error",
            "param": None,
            "code": "handler_error",
        }
        assert any("req-boom-1" in rec.getMessage() for rec in caplog.records)
        # the same worker keeps serving
        r = await client.post("/v1/infer/flaky", json={})
        assert r.status_code == 200 and r.json() == "fine"
        health = (await client.get("/health")).json()
        assert health["models"]["flaky"]["restarts"] == 0


async def test_out_of_memory_is_503_and_worker_survives() -> None:
    async with running_server([define(models.Flaky)]) as client:
        r = await client.post("/v1/infer/flaky", json={"kwargs": {"fail": True, "kind": "memory"}})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "resource_exhausted"
        assert (await client.post("/v1/infer/flaky", json={})).json() == "fine"


async def test_dead_worker_is_reported_and_restarted() -> None:
    async with running_server([define(models.Flaky)]) as client:
        r = await client.post("/v1/infer/flaky", json={"kwargs": {"fail": True, "kind": "exit"}})
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "worker_crashed"

        async def restarted() -> bool:
            model = (await client.get("/health")).json()["models"]["flaky"]
            worker = model["workers"][0]
            return (
                model["restarts"] == 1 and worker["generation"] == 1 and worker["state"] == "ready"
            )

        await wait_until(restarted, timeout=10)
        assert (await client.post("/v1/infer/flaky", json={})).json() == "fine"


async def test_timeout_is_504_and_the_worker_is_freed() -> None:
    async with running_server([define(models.Sleeper)], request_timeout_s=0.3) as client:
        started = time.perf_counter()
        r = await client.post("/v1/infer/sleeper", json={"kwargs": {"seconds": 1.0}})
        assert r.status_code == 504
        assert time.perf_counter() - started < 0.9
        assert r.json()["error"]["type"] == "timeout_error"
        assert "0.3 s" in r.json()["error"]["message"]

        # the job was cancelled; once the sleep it was in ends, the worker takes new jobs
        async def idle() -> bool:
            stats = (await client.get("/v1/stats")).json()["models"]["sleeper"]
            return stats["busy_workers"] == 0 and stats["cancelled"] == 1

        await wait_until(idle, timeout=3)
        r = await client.post("/v1/infer/sleeper", json={"kwargs": {"tag": "next"}})
        assert r.status_code == 200 and r.json() == {"tag": "next"}


async def test_queue_full_is_429_with_retry_after() -> None:
    definition = define(models.Sleeper, max_queue=1)
    async with running_server([definition]) as client:
        results: dict[str, httpx.Response] = {}

        async def call(tag: str, seconds: float) -> None:
            results[tag] = await client.post(
                "/v1/infer/sleeper", json={"kwargs": {"seconds": seconds, "tag": tag}}
            )

        async def stat(key: str) -> int:
            return int((await client.get("/v1/stats")).json()["models"]["sleeper"][key])

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "running", 0.5)
            await wait_until(lambda: stat("busy_workers"))
            tg.start_soon(call, "queued", 0.0)
            await wait_until(lambda: stat("queue_depth"))
            rejected = await client.post("/v1/infer/sleeper", json={})
        assert rejected.status_code == 429
        assert int(rejected.headers["retry-after"]) >= 1
        assert rejected.json()["error"]["type"] == "rate_limit_error"
        assert results["running"].json() == {"tag": "running"}
        assert results["queued"].json() == {"tag": "queued"}


async def test_disconnect_mid_stream_frees_the_worker() -> None:
    async with running_server([define(models.Words)]) as client:
        async with client.stream(
            "POST",
            "/v1/infer/words",
            json={"kwargs": {"n": 10_000, "delay_s": 0.01}, "stream": True},
        ) as r:
            seen = 0
            async for line in r.aiter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    break
        # the generation stops: the next request on the single worker is served at once
        started = time.perf_counter()
        r = await client.post("/v1/infer/words", json={"args": [1], "stream": False})
        assert r.json() == "w0 "
        assert time.perf_counter() - started < 2.0
        produced = models.Words.produced
        await anyio.sleep(0.2)
        assert models.Words.produced == produced  # nothing runs on behind our back
        stats = (await client.get("/v1/stats")).json()["models"]["words"]
        assert stats["cancelled"] == 1


async def test_disconnect_while_queued_drops_the_job() -> None:
    models.Sleeper.calls = 0
    async with running_server([define(models.Sleeper)]) as client:

        async def busy() -> bool:
            stats = (await client.get("/v1/stats")).json()["models"]["sleeper"]
            return stats["busy_workers"] == 1

        async with anyio.create_task_group() as tg:
            # occupy the only worker, then queue a request and hang up on it
            tg.start_soon(
                lambda: client.post("/v1/infer/sleeper", json={"kwargs": {"seconds": 0.6}})
            )
            await wait_until(busy)
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    "/v1/infer/sleeper", json={"kwargs": {"tag": "gone"}}, timeout=0.2
                )

        async def dropped() -> bool:  # once the worker is back at the queue
            stats = (await client.get("/v1/stats")).json()["models"]["sleeper"]
            return stats["dropped"] == 1

        await wait_until(dropped, timeout=3)
        stats = (await client.get("/v1/stats")).json()["models"]["sleeper"]
        assert stats["cancelled"] == 1
        assert models.Sleeper.calls == 1  # the abandoned job never ran


async def test_litapi_pydantic_validation_and_batching() -> None:
    models.NormAPI.batch_sizes.clear()
    async with running_server([define(models.NormAPI)]) as client:
        r = await client.post("/v1/infer/norm", json={"x": 3, "y": 4})
        assert r.status_code == 200 and r.json() == {"norm": 5.0}
        r = await client.post("/v1/infer/norm", json={"x": "three", "y": 4})
        assert r.status_code == 422
        assert "x" in r.json()["error"]["message"] and r.json()["error"]["param"] == "x"
        results: list[float] = []

        async def one(i: int) -> None:
            r = await client.post("/v1/infer/norm", json={"x": i, "y": 0})
            results.append(r.json()["norm"])

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(one, i)
        assert sorted(results) == [float(i) for i in range(16)]
        assert max(models.NormAPI.batch_sizes) > 1  # concurrent requests shared a batch


async def test_litapi_streaming() -> None:
    async with running_server([define(models.StreamingAPI)]) as client:
        r = await client.post("/v1/infer/lit-stream", json={"n": 3})
        assert [json.loads(e) for e in sse_data(r.text)[:-1]] == [
            {"value": 0},
            {"value": 1},
            {"value": 2},
        ]


async def test_several_workers_serve_in_parallel() -> None:
    async with running_server([define(models.Sleeper, workers_per_device=2)]) as client:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(
                    lambda: client.post("/v1/infer/sleeper", json={"kwargs": {"seconds": 0.5}})
                )
        assert time.perf_counter() - started < 0.9
        health = (await client.get("/health")).json()["models"]["sleeper"]
        assert [w["index"] for w in health["workers"]] == [0, 1]


async def test_api_key() -> None:
    async with running_server([define(models.Echo)], api_key="sekret", wait_ready=False) as client:
        r = await client.post("/v1/infer/echo", json={"args": ["x"]})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["x-request-id"]
        r = await client.post(
            "/v1/infer/echo", json={"args": ["x"]}, headers={"Authorization": "Bearer wrong"}
        )
        assert r.status_code == 401
        await wait_until(lambda: True)
        for headers in ({"Authorization": "Bearer sekret"}, {"X-API-Key": "sekret"}):
            with anyio.fail_after(10):
                while (await client.get("/ready", headers=headers)).status_code != 200:
                    await anyio.sleep(0.02)
            r = await client.post("/v1/infer/echo", json={"args": ["x"]}, headers=headers)
            assert r.status_code == 200 and r.json()["text"] == "x"


async def test_ready_waits_for_every_worker_to_load() -> None:
    async with running_server([define(models.SlowLoader)], wait_ready=False) as client:
        r = await client.get("/ready")
        assert r.status_code == 503 and r.json()["models"] == {"slow-loader": False}
        await wait_until(lambda: client.get("/ready"), timeout=5)
        await wait_until(lambda: _ok(client.get("/ready")), timeout=5)
        assert (await client.post("/v1/infer/slow-loader", json={})).json() == "loaded"


async def _ok(response: object) -> bool:
    return (await response).status_code == 200  # type: ignore[misc]


async def test_failed_load_is_reported() -> None:
    async with running_server([define(models.BrokenLoader)], wait_ready=False) as client:

        async def failed() -> bool:
            worker = (await client.get("/health")).json()["models"]["broken-loader"]["workers"][0]
            return worker["state"] == "failed"

        await wait_until(failed)
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded"
        assert (
            "weights.safetensors not found"
            in health["models"]["broken-loader"]["workers"][0]["error"]
        )
        assert (await client.get("/ready")).status_code == 503
        r = await client.post("/v1/infer/broken-loader", json={})
        assert r.status_code == 503
        assert "weights.safetensors not found" in r.json()["error"]["message"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_serves_under_trio() -> None:
    async with running_server([define(models.Words)]) as client:
        r = await client.post("/v1/infer/words", json={"args": [2], "stream": True})
        assert sse_data(r.text) == ['"w0 "', '"w1 "', "[DONE]"]


async def test_metrics_expose_counters_per_model() -> None:
    async with running_server([define(models.Echo), define(models.Flaky)]) as client:
        await client.post("/v1/infer/echo", json={"args": ["x"]})
        await client.post("/v1/infer/flaky", json={"kwargs": {"fail": True}})
        text = (await client.get("/metrics")).text
    assert 'localinfer_requests_total{model="echo",outcome="ok"} 1.0' in text
    assert 'localinfer_requests_total{model="flaky",outcome="failed"} 1.0' in text
    assert 'localinfer_workers{model="echo",state="ready"} 1.0' in text
    assert 'localinfer_latency_ms{model="echo",quantile="p50"}' in text
