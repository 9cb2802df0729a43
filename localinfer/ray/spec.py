"""What a Ray Serve application of localinfer serves: plain, picklable data.

The driver (``localinfer serve --ray``, ``serve run``, a ``serve deploy`` config file)
builds a :class:`RayAppConfig`; every replica rebuilds its model's definition from it on
its own node, so weights are found (or pulled) where they run, never shipped.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from localinfer.config import ReplicaSettings, Settings, load_settings
from localinfer.errors import ConfigurationError
from localinfer.runtime.model import ModelDefinition

#: the key of ``replicas`` (settings) for the deployment the multiplexed models share
MULTIPLEXED_SETTINGS = "multiplexed"

#: the toy models of ``localinfer serve --examples``, as import targets
EXAMPLE_TARGETS = (
    "localinfer.examples.demo:Echo",
    "localinfer.examples.demo:Countdown",
    "localinfer.examples.demo:Tone",
    "localinfer.examples.demo:Squares",
)


class ModelSource(BaseModel):
    """One served model: a catalog alias / repo id / path, or user code (``module:attr``)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["catalog", "target"]
    spec: str
    name: str
    trust_remote_code: bool = False


class RayAppConfig(BaseModel):
    """The arguments of :func:`localinfer.ray.build_app` (also a ``serve`` config's ``args``)."""

    model_config = ConfigDict(extra="forbid")

    #: catalog aliases, repo ids or paths, as ``--models``; ``name=spec`` serves ``spec``
    #: under ``name``
    models: list[str] = Field(default_factory=list)
    #: user code, ``module:attr``, as ``localinfer serve module:attr``
    targets: list[str] = Field(default_factory=list)
    #: the toy models of ``--examples``
    examples: bool = False
    trust_remote_code: list[str] = Field(default_factory=list)
    #: :class:`~localinfer.config.Settings` fields (CLI flags win over the environment)
    settings: dict[str, Any] = Field(default_factory=dict)
    #: models served together by one multiplexed deployment (``models-multiplexed``):
    #: each replica holds up to ``models_per_replica`` of them, loading one on its first
    #: call and unloading the least recently used; its replicas are set as
    #: ``replicas.multiplexed``. For many small models on few replicas.
    multiplexed: list[str] = Field(default_factory=list)
    models_per_replica: int = Field(default=2, ge=1)
    #: replicas of the HTTP ingress (the starlette app; it holds no model)
    ingress_replicas: int = Field(default=1, ge=1)
    ingress_num_cpus: float = Field(default=0.5, ge=0)
    #: the ingress refuses to start without an API key (``LOCALINFER_API_KEY`` in its
    #: environment): the key itself never travels in these arguments, which
    #: ``serve status`` and the dashboard show
    api_key_required: bool = False

    @field_validator("settings")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("api_key") is not None:
            raise ValueError(
                "the API key cannot be an argument of the Serve application (Serve shows "
                "its arguments): set LOCALINFER_API_KEY in the environment of the cluster's "
                "nodes (a Kubernetes Secret in a RayService) and api_key_required: true"
            )
        return value

    @field_validator("models", "targets", "trust_remote_code", "multiplexed", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``serve run localinfer.ray:build_app models=a,b`` passes strings."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def load_settings(self) -> Settings:
        return load_settings(**self.settings)

    def deployment_settings(self, settings: Settings, name: str) -> ReplicaSettings:
        """The replica settings of the deployment serving ``name``: its own, or for a
        multiplexed model those of the deployment the multiplexed models share."""
        return settings.replica_settings(MULTIPLEXED_SETTINGS if name in self.multiplexed else name)

    def in_ingress(self, settings: Settings) -> frozenset[str]:
        """The models run by the ingress itself (``in_ingress`` in their replica settings)."""
        names = frozenset(
            s.name for s in self.sources() if settings.replica_settings(s.name).in_ingress
        )
        both = sorted(names & set(self.multiplexed))
        if both:
            raise ConfigurationError(
                f"multiplexed models cannot also run in the ingress: {', '.join(both)}"
            )
        return names

    def sources(self) -> list[ModelSource]:
        """Every model, named. Imports user code (to read its name), loads nothing."""
        from localinfer.runtime.targets import default_name, import_target

        found = []
        for entry in self.models:
            name, sep, spec = entry.partition("=")
            if not sep:
                name = spec = entry
            found.append(
                ModelSource(
                    kind="catalog",
                    spec=spec,
                    name=name,
                    trust_remote_code=name in self.trust_remote_code,
                )
            )
        targets = [*self.targets, *(EXAMPLE_TARGETS if self.examples else ())]
        found += [
            ModelSource(kind="target", spec=spec, name=default_name(import_target(spec)))
            for spec in targets
        ]
        names = [source.name for source in found]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigurationError(f"models named twice: {', '.join(duplicates)}")
        if not found:
            raise ConfigurationError("nothing to serve: name --models, targets or --examples")
        unknown = sorted(set(self.multiplexed) - set(names))
        if unknown:
            raise ConfigurationError(f"multiplexed names no served model: {', '.join(unknown)}")
        return found


def actor_devices(request: str) -> list[str]:
    """The devices of this Ray actor. ``auto`` is the GPUs Ray gave it (Ray sets
    ``CUDA_VISIBLE_DEVICES`` to them: ``cuda:0`` … here), else the CPU: never a GPU it
    was not given, and no torch import to find out (seconds of each replica's start).
    Any other request resolves as in ``localinfer serve``."""
    from localinfer.runtime.devices import resolve_devices

    if request.strip().lower() != "auto" or sys.platform == "darwin":  # darwin: MPS
        return resolve_devices(request)
    import ray

    gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    return [f"cuda:{i}" for i in range(len(gpus))] or ["cpu"]


def definition_for(source: ModelSource, settings: Settings) -> ModelDefinition:
    """The model's definition, built where it runs (a replica): devices are its own."""
    devices = actor_devices(settings.device)
    if source.kind == "target":
        from localinfer.runtime.targets import target_definition

        return target_definition(
            source.spec,
            name=source.name,
            isolation_of=settings.isolation,
            devices=devices,
            workers_per_device=settings.workers,
            max_queue=settings.max_queue,
            stream_buffer=settings.stream_buffer,
        )
    from localinfer.cli.definitions import catalog_definitions

    trust = [source.spec] if source.trust_remote_code else []
    (definition,) = catalog_definitions(
        [source.spec], trust, devices, settings, names=[source.name]
    )
    return dataclasses.replace(definition, name=source.name)


#: catalog tasks whose jobs answer once (one result, no stream)
UNARY_TASKS = frozenset({"embeddings", "rerank"})


def answers_once(source: ModelSource, task: str) -> bool:
    """Whether every job of this model is one result: a unary task, or user code whose
    ``infer`` is a plain function (not a generator). A plain ``infer`` that returns an
    iterator still streams: its items then reach the ingress together, at the end."""
    if task in UNARY_TASKS:
        return True
    if source.kind != "target" or task != "infer":
        return False
    from localinfer.runtime.targets import import_target

    target = import_target(source.spec)
    sample = target[0] if isinstance(target, list | tuple) else target
    infer = getattr(sample, "infer", None)
    if infer is None or not callable(infer):
        return False  # a Handler or LitAPI: it may stream
    return not (inspect.isgeneratorfunction(infer) or inspect.isasyncgenfunction(infer))
