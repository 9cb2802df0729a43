"""The replicas' reports (:mod:`localinfer.ray.board`), as ``/health`` and ``/v1/stats``
show a model served by Ray Serve replicas: per replica, and summed over them under the
names plain ``localinfer serve`` uses for its workers.

A replica's report is its model's ``health()`` (workers, abandoned workers and threads),
``hung_workers``, its counters (``stats``) and its node's devices.
"""

from __future__ import annotations

from typing import Any

Report = dict[str, Any]


def _count(report: Report, key: str) -> int:
    """A number in the report, or the length of a list there (abandoned workers, threads)."""
    value = report.get(key, 0)
    return len(value) if isinstance(value, list) else int(value or 0)


def degraded(report: Report) -> bool:
    """Not ready, yet not draining: a worker down, loading, hung, or left hung past
    ``max_abandoned_workers`` (what makes plain ``localinfer serve``'s /health degraded)."""
    return not report.get("ready") and not report.get("draining")


def replica_summary(report: Report) -> dict[str, Any]:
    """One replica in ``/v1/stats``: its queue, work in flight, throughput, devices, and
    its hung and abandoned workers and threads."""
    stats = report.get("stats", {})
    workers = report.get("workers", [])
    used = {worker.get("device") for worker in workers}
    return {
        "replica": report.get("replica"),
        "ready": report.get("ready"),
        "degraded": degraded(report),
        "queue_depth": report.get("queue_depth", 0),
        "in_flight": stats.get("in_flight", 0),
        "succeeded": stats.get("succeeded", 0),
        "failed": stats.get("failed", 0),
        "cancelled": stats.get("cancelled", 0),
        "rejected": stats.get("rejected", 0),
        "requests_per_second": stats.get("requests_per_second", 0.0),
        "chunks_per_second": stats.get("chunks_per_second", 0.0),
        "latency_ms": stats.get("latency_ms", {}),
        "workers": len(workers),
        "busy_workers": sum(bool(w.get("busy")) for w in workers),
        **{key: _count(report, key) for key in SUMMED},
        # the node's devices that this replica's workers run on (GPUs: its own only)
        "devices": [d for d in report.get("devices", []) if d.get("name") in used],
    }


#: what a model's ``/v1/stats`` entry sums over its replicas (counts)
SUMMED = (
    "restarts",
    "hangs",
    "hung_workers",
    "abandoned_workers",
    "abandoned_threads",
    "abandoned_device_memory_bytes",
)


def model_health(reports: list[Report]) -> dict[str, Any]:
    """The replica-borne part of a model's ``/health`` entry: its workers, abandoned
    workers and threads, each naming its replica, and the summed counts."""

    def listed(key: str) -> list[dict[str, Any]]:
        return [{**item, "replica": r["replica"]} for r in reports for item in r.get(key, [])]

    return {
        "restarts": sum(_count(r, "restarts") for r in reports),
        "hangs": sum(_count(r, "hangs") for r in reports),
        "queue_depth": sum(_count(r, "queue_depth") for r in reports),
        "target_workers": sum(_count(r, "target_workers") for r in reports),
        "workers": listed("workers"),
        "abandoned_workers": listed("abandoned_workers"),
        "abandoned_device_memory_bytes": sum(
            _count(r, "abandoned_device_memory_bytes") for r in reports
        ),
        "abandoned_threads": listed("abandoned_threads"),
        "degraded_replicas": [r["replica"] for r in reports if degraded(r)],
        "replicas": [replica_summary(r) for r in reports],
    }


def engine(reports: list[Report]) -> str | None:
    """What serves the model, as the first of its replicas' loaded workers says."""
    return next(
        (w["engine"] for r in reports for w in r.get("workers", []) if w.get("engine")), None
    )


def model_stats(reports: list[Report]) -> dict[str, Any]:
    """What a model's ``/v1/stats`` entry takes from its replicas: the sums (over the
    ingress's own zeros: it runs no worker of the model) and the replicas."""
    summaries = [replica_summary(r) for r in reports]
    return {
        **{key: sum(s[key] for s in summaries) for key in (*SUMMED, "workers", "busy_workers")},
        "replicas": summaries,
    }
