"""One typed settings object: CLI flags > ``LOCALINFER_*`` environment > config file > defaults.

The config file is TOML at ``platformdirs.user_config_dir("localinfer")/config.toml``
(or the path in ``LOCALINFER_CONFIG``). Every field is listed in docs/configuration.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def config_file() -> Path:
    explicit = os.environ.get("LOCALINFER_CONFIG")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_config_dir("localinfer")) / "config.toml"


class ReplicaSettings(BaseModel):
    """How one model runs on Ray Serve (``localinfer serve --ray``): its replicas, each a
    process with the model's worker threads, and what each one reserves."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0, description="fewest replicas (autoscaling floor)")
    max_replicas: int = Field(default=1, ge=1, description="most replicas (autoscaling ceiling)")
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="requests in flight per replica that autoscaling aims at"
    )
    max_ongoing_requests: int = Field(
        default=64,
        ge=1,
        description="requests one replica takes at once; more wait in Serve's router",
    )
    max_queued_requests: int = Field(
        default=256, ge=-1, description="requests waiting for a replica before 429 (-1: unbounded)"
    )
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs each replica reserves")
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs each replica reserves")
    in_ingress: bool = Field(
        default=False,
        description="run the model in the HTTP ingress's own process (one hop less per "
        "request; it scales with the ingress, its replica settings are not used)",
    )


class Settings(BaseSettings):
    """Server and runtime settings."""

    model_config = SettingsConfigDict(env_prefix="LOCALINFER_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to bind (0: any free port)")
    api_key: SecretStr | None = Field(None, description="required as Bearer or X-API-Key if set")
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Host header names accepted besides loopback and the bind address ('*': any); "
        "unset: none on a loopback bind, any elsewhere",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="browser origins allowed to call the API ('*': any)"
    )
    header_timeout_s: float = Field(
        30.0, gt=0, description="request headers (and idle keep-alive) must arrive within this"
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="a request body must arrive within this after reading starts (408)"
    )
    max_header_line_bytes: int = Field(
        8192, ge=256, description="longest request line or header line, name and value (431)"
    )
    max_header_bytes: int = Field(
        32768, ge=1024, description="all request headers together, names and values (431)"
    )
    max_header_count: int = Field(100, ge=8, description="most request headers (431)")
    max_connections: int | None = Field(
        1024, ge=1, description="open client connections; one more is answered 503 and closed"
    )
    certfile: Path | None = Field(None, description="TLS certificate chain (PEM); with keyfile")
    keyfile: Path | None = Field(None, description="TLS private key (PEM); with certfile")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, mps, or a comma list")
    workers: int = Field(1, ge=1, le=64, description="worker threads per device per model")
    max_queue: int = Field(256, ge=1, description="queued requests per model before 429")
    request_timeout_s: float = Field(300.0, gt=0, description="deadline of one request (504)")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body (413)")
    stream_buffer: int = Field(
        16_384, ge=1, description="items a stream may run ahead of its reader"
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="grace period for in-flight work at exit"
    )
    hang_grace_s: float = Field(
        30.0, gt=0, description="a worker in its handler this long after its request ended is hung"
    )
    max_abandoned_workers: int = Field(
        1, ge=0, description="hung threads a model may leave behind and replace (0: never)"
    )
    load_timeout_s: float | None = Field(
        600.0, gt=0, description="a worker whose load() runs longer has failed (thread abandoned)"
    )
    worker_nice: int = Field(
        10, ge=0, le=19, description="how much lower model threads run than the event loop (Linux)"
    )
    gil_switch_interval_ms: float = Field(
        0.25, gt=0, description="localinfer serve: how long a thread may keep the GIL from the loop"
    )
    default_max_tokens: int = Field(1024, ge=1, description="max_tokens when a request sets none")
    max_tokens_limit: int = Field(32768, ge=1, description="largest max_tokens accepted (400)")
    max_messages: int = Field(2048, ge=1, description="most chat messages in one request (413)")
    max_input_chars: int = Field(1_000_000, ge=1, description="longest prompt / text (413)")
    max_embedding_inputs: int = Field(2048, ge=1, description="most texts per embeddings call")
    max_rerank_documents: int = Field(1000, ge=1, description="most documents per rerank call")
    remote_images: bool = Field(
        False, description="fetch http(s) image URLs in chat (never private addresses)"
    )
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest image (400)")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="largest decoded image, width x height (400)"
    )
    max_image_side: int = Field(2048, ge=16, description="longer side images are resized to")
    max_images: int = Field(16, ge=1, description="most images in one chat request (400)")
    remote_image_timeout_s: float = Field(10.0, gt=0, description="deadline of one image fetch")
    remote_image_max_redirects: int = Field(3, ge=0, description="redirects an image fetch follows")
    max_audio_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="largest audio upload")
    max_audio_seconds: float = Field(3600.0, gt=0, description="longest audio accepted (413)")
    embedding_cache_size: int = Field(1024, ge=0, description="LRU entries per model (0: off)")
    gguf_cache_max_bytes: int | None = Field(
        64 * 1024**3,
        ge=0,
        description="converted GGUF checkpoints kept at most (least recently used removed)",
    )
    allow_slow_fallback: bool = Field(
        False,
        description="serve without a capability a dependency lacks (e.g. continuous batching) "
        "instead of refusing to start",
    )
    offline: bool = Field(False, description="never download (HF_HUB_OFFLINE=1 does the same)")
    isolate: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="models whose handlers run in a process of their own ('*': every "
        "model named by catalog alias, path or import path): their Python does not take "
        "the GIL from the server's loop, and a crash or hang ends that process "
        "(docs/reliability.md)",
    )
    isolated_priority: IsolatedPriority = Field(
        "nice",
        description="the isolated models' processes: 'nice' (worker_nice below the loop) or "
        "'idle' (Linux SCHED_IDLE: they run when no other thread wants a core, so the loop "
        "answers at once under any load, and every other program comes first too)",
    )
    keep_alive_s: float | None = Field(
        None, gt=0, description="unload a model idle this long; its next request reloads it"
    )
    load_on_demand: bool = Field(
        False, description="a request naming a cached catalog model that is not loaded loads it"
    )
    replicas: dict[str, ReplicaSettings] = Field(
        default_factory=dict,
        description="per model on Ray Serve (name, or '*' for every model): replicas, "
        "autoscaling and resources; see docs/scale-out.md",
    )
    ray_direct_ingress: bool | None = Field(
        None,
        description="with --ray: each ingress replica answers HTTP on --host:--port itself "
        "(one SO_REUSEPORT socket shared by the replicas), without Serve's proxy hop; "
        "unset: on for a local instance, off with an address (see docs/scale-out.md)",
    )
    ray_ingress_replicas: int = Field(
        1, ge=1, description="with --ray: replicas of the HTTP ingress deployment"
    )
    loop: Literal["asyncio", "trio"] = Field("asyncio", description="event loop implementation")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file()))

    @field_validator("allowed_hosts", "cors_origins", "isolate", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``"a,b"`` (a flag or an environment variable) or a JSON list, as a list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    def isolation(self, model: str) -> IsolatedPriority | None:
        """How ``model``'s handlers run in processes of their own, if they do."""
        return isolation_of(model, self.isolate, self.isolated_priority)

    def replica_settings(self, model: str) -> ReplicaSettings:
        """The Ray Serve settings of ``model``: its own, else ``'*'``'s, else defaults."""
        found = self.replicas.get(model) or self.replicas.get("*")
        return found if found is not None else ReplicaSettings()

    @property
    def api_key_value(self) -> str | None:
        return None if self.api_key is None else self.api_key.get_secret_value()


#: how the processes of isolated models run: ``worker_nice`` below the loop, or at Linux's
#: idle priority
IsolatedPriority = Literal["nice", "idle"]


def isolation_of(
    model: str, isolate: Collection[str], priority: IsolatedPriority
) -> IsolatedPriority | None:
    """How ``model`` runs in a process of its own, or ``None`` if the ``isolate`` setting
    (model names, ``"*"`` for all) does not name it."""
    return priority if model in isolate or "*" in isolate else None


def load_settings(**overrides: Any) -> Settings:
    """Settings with the given (CLI) overrides; ``None`` means "not given"."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def slow_fallback_allowed() -> bool:
    """Whether the operator allows serving without a capability a dependency lacks
    (``--allow-slow-fallback``, which ``serve`` puts in the environment for the handlers)."""
    return load_settings().allow_slow_fallback
