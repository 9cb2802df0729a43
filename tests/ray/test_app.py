"""localinfer's per-model settings become Serve's deployment options (no Ray started)."""

from __future__ import annotations

import argparse

import pytest

from localinfer.config import ReplicaSettings, load_settings
from localinfer.errors import ConfigurationError
from localinfer.ray.spec import RayAppConfig

pytestmark = pytest.mark.ray


def test_fixed_replicas_and_autoscaling_map_onto_serve_options() -> None:
    pytest.importorskip("ray.serve")
    from localinfer.ray.app import deployment_name, deployment_options

    fixed = deployment_options(ReplicaSettings(min_replicas=2, max_replicas=2, num_gpus=1))
    assert fixed["num_replicas"] == 2
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert "autoscaling_config" not in fixed
    scaled = deployment_options(
        ReplicaSettings(min_replicas=0, max_replicas=4, target_ongoing_requests=3)
    )
    assert scaled["autoscaling_config"]["min_replicas"] == 0
    assert scaled["autoscaling_config"]["initial_replicas"] == 1
    assert scaled["autoscaling_config"]["max_replicas"] == 4
    assert scaled["autoscaling_config"]["target_ongoing_requests"] == 3
    # Serve warns of a window shorter than its metrics push interval (10 s), and will refuse it
    assert scaled["autoscaling_config"]["look_back_period_s"] > 10
    assert deployment_name("org/model:q4") == "model-org_model_q4"


def test_replica_settings_by_name_then_star() -> None:
    settings = load_settings(replicas={"a": {"max_replicas": 3}, "*": {"num_gpus": 1}})
    assert settings.replica_settings("a").max_replicas == 3
    assert settings.replica_settings("b").num_gpus == 1
    assert load_settings().replica_settings("b") == ReplicaSettings()


def test_app_config_names_models_and_reads_serve_run_strings() -> None:
    config = RayAppConfig.model_validate(
        {"models": "chat=org/chat,all-minilm", "targets": "tests.ray.models:Sleep"}
    )
    assert [(s.kind, s.name, s.spec) for s in config.sources()] == [
        ("catalog", "chat", "org/chat"),
        ("catalog", "all-minilm", "all-minilm"),
        ("target", "sleep", "tests.ray.models:Sleep"),
    ]
    with pytest.raises(ConfigurationError):
        RayAppConfig(models=["sleep"], targets=["tests.ray.models:Sleep"]).sources()
    with pytest.raises(ConfigurationError):
        RayAppConfig().sources()


def test_api_key_never_travels_in_the_app_arguments() -> None:
    with pytest.raises(ValueError, match="LOCALINFER_API_KEY"):
        RayAppConfig(models=["m"], settings={"api_key": "secret"})

    from localinfer.ray.cli import app_config

    args = _args("local")
    settings = load_settings(api_key="secret")
    config = app_config(args, settings, {"api_key": "secret", "workers": 2}, ["m"])
    assert config.api_key_required is True
    assert "secret" not in config.model_dump_json()
    assert config.settings["workers"] == 2


def test_in_ingress_models_are_named_by_their_settings() -> None:
    config = RayAppConfig(models=["a", "b"], multiplexed=["b"])
    settings = load_settings(replicas={"a": {"in_ingress": True}})
    assert config.in_ingress(settings) == frozenset({"a"})
    clash = load_settings(replicas={"b": {"in_ingress": True}})
    with pytest.raises(ConfigurationError, match="multiplexed"):
        config.in_ingress(clash)


def test_which_models_are_called_in_one_round_trip() -> None:
    from localinfer.ray.spec import ModelSource, answers_once

    def target(spec: str) -> ModelSource:
        return ModelSource(kind="target", spec=spec, name="m")

    assert answers_once(target("tests.ray.models:Sleep"), "infer")  # a plain infer
    assert not answers_once(target("tests.ray.models:Ticks"), "infer")  # a generator
    catalog = ModelSource(kind="catalog", spec="all-minilm", name="all-minilm")
    assert answers_once(catalog, "embeddings")
    assert not answers_once(catalog, "chat")  # may stream


def _args(ray: str) -> argparse.Namespace:
    """``localinfer serve --ray [ray]``'s arguments, no model flags."""
    return argparse.Namespace(ray=ray, name=None, targets=[], examples=False, trust_remote_code=[])


def test_direct_ingress_is_the_local_default_and_binds_the_server_port() -> None:
    from localinfer.ray.cli import app_config, direct_ingress

    local = app_config(_args("local"), load_settings(port=8123, ray_ingress_replicas=2), {}, ["m"])
    # every ingress replica binds --host:--port itself: they read both from the app's settings
    assert local.settings["ray_direct_ingress"] is True
    assert (local.settings["host"], local.settings["port"]) == ("127.0.0.1", 8123)
    assert local.ingress_replicas == 2
    assert direct_ingress(_args("auto"), load_settings()) is False  # a cluster: Serve's proxy
    assert direct_ingress(_args("local"), load_settings(ray_direct_ingress=False)) is False
    with pytest.raises(ConfigurationError, match="load balancer"):
        direct_ingress(_args("auto"), load_settings(ray_direct_ingress=True))
    with pytest.raises(ConfigurationError, match="share --port"):
        direct_ingress(_args("local"), load_settings(port=0))


def test_a_local_instance_has_the_cpus_every_ingress_replica_reserves() -> None:
    from localinfer.ray.cli import local_cpus

    settings = load_settings(
        replicas={"a": {"in_ingress": True, "num_cpus": 2}, "b": {"num_cpus": 1, "max_replicas": 3}}
    )
    config = RayAppConfig(models=["a", "b"], ingress_replicas=2, ingress_num_cpus=0.5)
    # each ingress replica reserves 0.5 + a's 2; b's replicas 1 each
    assert local_cpus(config, settings) >= 2 * 2.5 + 3


@pytest.mark.parametrize(("given", "devices"), [([], ["cpu"]), (["3", "5"], ["cuda:0", "cuda:1"])])
def test_auto_is_the_gpus_ray_gave_the_actor(
    monkeypatch: pytest.MonkeyPatch, given: list[str], devices: list[str]
) -> None:
    ray = pytest.importorskip("ray")
    from localinfer.ray.spec import actor_devices

    class Context:
        def get_accelerator_ids(self) -> dict[str, list[str]]:
            return {"GPU": given}

    monkeypatch.setattr(ray, "get_runtime_context", Context)
    assert actor_devices("auto") == devices
    assert actor_devices("cpu") == ["cpu"]


def test_a_multiplexed_model_takes_the_shared_deployments_settings() -> None:
    config = RayAppConfig(models=["a", "b"], multiplexed=["b"])
    settings = load_settings(
        replicas={"a": {"max_ongoing_requests": 3}, "multiplexed": {"max_ongoing_requests": 7}}
    )
    assert config.deployment_settings(settings, "a").max_ongoing_requests == 3
    assert config.deployment_settings(settings, "b").max_ongoing_requests == 7
