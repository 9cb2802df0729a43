"""The ingress on a local Ray instance: a model run in its own process, the API key kept
out of what Serve shows, and model management that answers 501 instead of differing."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.ray.conftest import API_KEY, RayServed

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_model_in_ingress_runs_in_the_ingress_process(ray_served: RayServed) -> None:
    with ray_served.http() as http:
        answer = http.post("/v1/infer/where", json={}).json()
        stats = http.get("/v1/stats").json()["models"]
    assert "#ingress#" in answer["actor"], answer
    assert stats["where"]["succeeded"] >= 1
    assert stats["where"]["workers"], stats["where"]  # local worker threads, no replicas


def test_api_key_is_required_and_absent_from_serve_config(ray_served: RayServed) -> None:
    from ray import serve

    assert httpx.get(f"{ray_served.url}/v1/models", timeout=10).status_code == 401
    with ray_served.http() as http:
        assert http.get("/v1/models").status_code == 200

    controller = serve.context._get_global_client()._controller
    import ray

    details = json.dumps(ray.get(controller.get_serve_instance_details.remote()))
    assert "ingress" in details
    assert API_KEY not in details  # what the dashboard and `serve status` show
    deployments = serve.status().applications[ray_served.app].deployments
    infos = {
        name: ray.get(controller.get_deployment_info.remote(name, ray_served.app))
        for name in deployments
    }
    # the deployments' arguments (pickled in their info) name the models, not the key
    assert b"tests.ray.models:Sleep" in infos["ingress"]
    assert not [name for name, info in infos.items() if API_KEY.encode() in info]


def test_load_and_unload_answer_501_on_ray(ray_served: RayServed) -> None:
    with ray_served.http() as http:
        served = http.post("/v1/models/sleep/load", json={})
        assert served.status_code == 200 and served.json()["loaded"] is False
        new = http.post("/v1/models/all-minilm/load", json={})
        assert new.status_code == 501, new.text
        assert new.json()["error"]["code"] == "not_supported"
        assert "application's config" in new.json()["error"]["message"]
        gone = http.delete("/v1/models/sleep")
        assert gone.status_code == 501 and gone.json()["error"]["code"] == "not_supported"
        assert http.delete("/v1/models/nope").status_code == 404
        assert http.post("/v1/infer/sleep", json={"kwargs": {"seconds": 0.01}}).status_code == 200
