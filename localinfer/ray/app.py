"""The Ray Serve application: an ingress, a board, and one deployment per model.

Replicas, placement, autoscaling and restarts are Ray Serve's; what each model asks for
(replicas, GPUs and CPUs per replica, target load) comes from localinfer's settings
(:class:`~localinfer.config.ReplicaSettings`, per model or ``'*'``).
"""

from __future__ import annotations

import re
from typing import Any, cast

from ray import serve
from ray.serve import Application, Deployment

from localinfer.cli.definitions import check_isolated_names
from localinfer.config import ReplicaSettings
from localinfer.ray.board import ReplicaBoard
from localinfer.ray.ingress import Ingress
from localinfer.ray.replica import ModelReplica
from localinfer.ray.spec import MULTIPLEXED_SETTINGS, RayAppConfig

#: how long Serve waits for a replica's constructor (a model load) before retrying it
_HEALTH_CHECK_PERIOD_S = 2.0


#: the deployment serving the multiplexed models
MULTIPLEXED = "models-multiplexed"


#: the autoscaler averages each deployment's ongoing requests over this window
LOOK_BACK_PERIOD_S = 15.0


def deployment_name(model: str) -> str:
    """``model-<name>``, with what Serve cannot take in a name replaced."""
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def deployment_options(replicas: ReplicaSettings) -> dict[str, Any]:
    """Serve's options for a model deployment, from localinfer's per-model settings."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus},
        "max_ongoing_requests": replicas.max_ongoing_requests,
        "max_queued_requests": replicas.max_queued_requests,
        "health_check_period_s": _HEALTH_CHECK_PERIOD_S,
    }
    if replicas.min_replicas == replicas.max_replicas:
        options["num_replicas"] = replicas.max_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": replicas.min_replicas,
            "initial_replicas": max(replicas.min_replicas, 1),
            "max_replicas": replicas.max_replicas,
            "target_ongoing_requests": replicas.target_ongoing_requests,
            # react within seconds: a model replica is costly, its queue more so
            "upscale_delay_s": 3.0,
            "downscale_delay_s": 60.0,
            # longer than Serve's metrics push interval (10 s unless set: see
            # localinfer.ray.local), or a decision may find no sample in its window
            "look_back_period_s": LOOK_BACK_PERIOD_S,
        }
    return options


def build_app(config: RayAppConfig | dict[str, Any]) -> Application:
    """localinfer as a Ray Serve application (``serve.run(build_app(...))``; also an
    application builder for ``serve run localinfer.ray:build_app models=...``)."""
    app_config = config if isinstance(config, RayAppConfig) else RayAppConfig.model_validate(config)
    settings = app_config.load_settings()
    sources = app_config.sources()
    check_isolated_names(settings, [source.name for source in sources])
    args = app_config.model_dump()
    board = _deployment(ReplicaBoard, name="board", ray_actor_options={"num_cpus": 0}).bind()
    in_ingress = app_config.in_ingress(settings)
    models = {
        source.name: _deployment(
            ModelReplica,
            name=deployment_name(source.name),
            **deployment_options(app_config.deployment_settings(settings, source.name)),
        ).bind(args, source.name, board)
        for source in sources
        if source.name not in app_config.multiplexed and source.name not in in_ingress
    }
    if app_config.multiplexed:
        shared = _deployment(
            ModelReplica,
            name=MULTIPLEXED,
            **deployment_options(settings.replica_settings(MULTIPLEXED_SETTINGS)),
        ).bind(args, "", board, app_config.multiplexed, app_config.models_per_replica)
        models.update({name: shared for name in app_config.multiplexed})
    hosted = [settings.replica_settings(name) for name in in_ingress]
    ingress = _deployment(
        serve.ingress()(Ingress),
        name="ingress",
        num_replicas=app_config.ingress_replicas,
        # what its own models reserve, besides the app's share
        ray_actor_options={
            "num_cpus": app_config.ingress_num_cpus + sum(r.num_cpus for r in hosted),
            "num_gpus": sum(r.num_gpus for r in hosted),
        },
        # as many as the app's own limits allow: backpressure is the models' to apply
        max_ongoing_requests=4096,
    )
    return ingress.bind(args, models, board)


def _deployment(cls: type, **options: Any) -> Deployment:
    """``cls`` as a Serve deployment with ``options``; no access log line per call."""
    deployment = cast(Deployment, serve.deployment(cls))
    return deployment.options(logging_config={"enable_access_log": False}, **options)
