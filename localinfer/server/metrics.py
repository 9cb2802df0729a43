"""``GET /metrics``: Prometheus text, read from the runtime's counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from localinfer.runtime.registry import ModelRegistry
from localinfer.server.connections import ConnectionLimit
from localinfer.server.state import registry_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RuntimeCollector(Collector):
    """Exposes every served model's counters, queue, latency and worker states."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "localinfer_requests", "Requests by outcome", labels=["model", "outcome"]
        )
        queue = GaugeMetricFamily("localinfer_queue_depth", "Queued jobs", labels=["model"])
        in_flight = GaugeMetricFamily(
            "localinfer_in_flight", "Jobs not yet answered", labels=["model"]
        )
        latency = GaugeMetricFamily(
            "localinfer_latency_ms", "Recent request latency", labels=["model", "quantile"]
        )
        throughput = GaugeMetricFamily(
            "localinfer_requests_per_second",
            "Answered requests per second, last minute",
            labels=["model"],
        )
        workers = GaugeMetricFamily(
            "localinfer_workers", "Worker threads by state", labels=["model", "state"]
        )
        restarts = CounterMetricFamily(
            "localinfer_worker_restarts", "Worker threads restarted", labels=["model"]
        )
        for model in self.registry:
            stats = model.stats
            for outcome, value in (
                ("ok", stats.succeeded),
                ("failed", stats.failed),
                ("cancelled", stats.cancelled),
                ("rejected", stats.rejected),
            ):
                requests.add_metric([model.name, outcome], value)
            queue.add_metric([model.name], model.queue.depth)
            in_flight.add_metric([model.name], stats.in_flight)
            snapshot = stats.snapshot()
            throughput.add_metric([model.name], snapshot["requests_per_second"])
            for quantile, value in snapshot["latency_ms"].items():
                if value is not None:
                    latency.add_metric([model.name, quantile], value)
            states: dict[str, int] = {}
            for worker in model.workers:
                states[worker.state] = states.get(worker.state, 0) + 1
            for state, count in states.items():
                workers.add_metric([model.name, state], count)
            restarts.add_metric([model.name], model.restarts)
        yield from (requests, queue, in_flight, latency, throughput, workers, restarts)


class ConnectionCollector(Collector):
    """Open client connections against ``max_connections``, and those refused."""

    def __init__(self, limit: ConnectionLimit):
        self.limit = limit

    def collect(self) -> Iterator[Metric]:
        limit = self.limit
        yield GaugeMetricFamily(
            "localinfer_connections_open", "Open client connections", value=limit.open
        )
        if limit.max_connections is not None:
            yield GaugeMetricFamily(
                "localinfer_connections_max", "max_connections", value=limit.max_connections
            )
        yield CounterMetricFamily(
            "localinfer_connections_accepted", "Client connections accepted", value=limit.accepted
        )
        yield CounterMetricFamily(
            "localinfer_connections_refused",
            "Client connections refused (503) at max_connections",
            value=limit.refused,
        )


async def metrics(request: Request) -> Response:
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(RuntimeCollector(registry_of(request)))
    limit: ConnectionLimit | None = getattr(request.app.state, "connections", None)
    if limit is not None:
        collectors.register(ConnectionCollector(limit))
    return Response(generate_latest(collectors), media_type=CONTENT_TYPE)


routes = [Route("/metrics", metrics, methods=["GET"])]
