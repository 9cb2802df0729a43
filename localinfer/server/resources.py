"""The answers of localinfer's own routes (models, downloads, catalog, cache, stats,
health), each defined once: the route that sends one builds it, ``/openapi.json`` is
generated from it, and the client parses the JSON with it.

The OpenAI shapes live in :mod:`localinfer.server.protocol`; these are the rest. Each
lists the fields it is known by and allows more, so a newer server's additions pass
through an older client. Importing this module loads pydantic only (no starlette), so
the clients can use it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Resource(BaseModel):
    """An object whose listed fields are there; others may be too. Frozen: a value."""

    model_config = ConfigDict(extra="allow", frozen=True)


# -- models ------------------------------------------------------------------------------------


class ModelState(Resource):
    """A model's health: task, readiness, queue and every worker."""

    id: str
    object: str | None = None
    ready: bool | None = None
    workers: list[dict[str, Any]] | None = None


class ModelInfo(Resource):
    """``GET /v1/models/{id}``: the model card and the model's health."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "localinfer"
    task: str = ""
    #: what serves it, e.g. "llama.cpp (batched)" or a slower fallback (``Handler.engine``)
    engine: str | None = None


class UnloadReport(Resource):
    id: str
    object: Literal["model"] = "model"
    unloaded: bool


# -- downloads, catalog, cache -----------------------------------------------------------------


class DownloadError(Resource):
    message: str
    code: str | None = None


class Download(Resource):
    """A model download and how far it got."""

    id: str
    object: Literal["download"] = "download"
    model: str
    state: str
    progress: dict[str, Any] | None = None
    error: DownloadError | None = None


class DownloadList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Download]


class CatalogEntry(Resource):
    """A model the server knows by alias (``/v1/catalog``): where it comes from, and
    whether it is downloaded (``cached``) and serving (``loaded``)."""

    id: str
    object: Literal["catalog_entry"] = "catalog_entry"
    repo: str
    task: str
    handler: str = ""
    description: str = ""
    origin: str = ""
    #: servable without a download
    cached: bool = False
    loaded: bool = False


class Catalog(BaseModel):
    object: Literal["list"] = "list"
    data: list[CatalogEntry]


class CachedModel(Resource):
    """A model repo in the server's Hugging Face cache (``/v1/cache``)."""

    id: str
    object: Literal["cached_model"] = "cached_model"
    size_bytes: int = 0
    files: int = 0
    revisions: int = 0
    last_accessed: float = 0.0
    loaded: bool = False


class CachedModels(BaseModel):
    object: Literal["list"] = "list"
    data: list[CachedModel]


# -- operations --------------------------------------------------------------------------------


class ModelStats(Resource):
    """One model's counters, latency and workers (the call layer's per-model numbers)."""

    task: str = ""
    #: what serves it, e.g. "llama.cpp (batched)" or a slower fallback (``Handler.engine``)
    engine: str | None = None
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    in_flight: int = 0
    queue_depth: int = 0
    workers: int = 0
    busy_workers: int = 0
    requests_per_second: float = 0.0
    #: ``{"p50": ..., "p95": ..., ...}`` in ms
    latency_ms: dict[str, float | None] = Field(default_factory=dict)
    #: chat models: streamed text deltas per second (about tokens/s)
    tokens_per_second: float | None = None
    #: what its handlers keep between requests, by cache: ``bytes``, ``limit_bytes``,
    #: ``entries`` (the llama.cpp engine's prompt cache)
    caches: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: a model served on Ray Serve: each replica's counters (its id under ``replica``)
    replicas: list[ModelStats] = Field(default_factory=list)

    @property
    def latency_p50_ms(self) -> float | None:
        return self.latency_ms.get("p50")

    @property
    def latency_p95_ms(self) -> float | None:
        return self.latency_ms.get("p95")

    @property
    def raw(self) -> dict[str, Any]:
        """Every field the server sent, the unlisted ones too."""
        return self.model_dump()


class DeviceStats(Resource):
    """One device of the server's machine: the CPU (with the RAM) or a GPU."""

    name: str = ""
    kind: str = ""
    description: str = ""
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    #: where the numbers came from: "psutil", "nvml" or "torch"
    source: str = ""

    @property
    def memory_fraction(self) -> float | None:
        if not self.memory_total_bytes or self.memory_used_bytes is None:
            return None
        return min(1.0, self.memory_used_bytes / self.memory_total_bytes)

    @property
    def raw(self) -> dict[str, Any]:
        """Every field the server sent, the unlisted ones too."""
        return self.model_dump()


class Stats(BaseModel):
    """``GET /v1/stats``."""

    models: dict[str, ModelStats]
    devices: list[DeviceStats] = Field(default_factory=list)
    #: how the server process's OpenMP threads wait (``GOMP_SPINCOUNT=1000``, or libgomp's
    #: default for a process serving only llama.cpp: localinfer.openmp)
    openmp: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    models: dict[str, dict[str, Any]]


class Readiness(BaseModel):
    ready: bool
    models: dict[str, bool]
