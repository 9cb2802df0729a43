"""A served model: taking jobs, draining, and its state and health, on top of its worker
pool (:mod:`localinfer.runtime.pool`: starting, following and scaling workers).

Stopping drains: no new jobs, queued and running ones may finish until the drain
deadline; then every job still unanswered gets :class:`ShuttingDown` (503). The
definition is in :mod:`localinfer.runtime.definition`.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Unpack

import anyio

from localinfer.errors import ModelNotReady, QueueFull, ShuttingDown
from localinfer.handlers.base import CacheUsage
from localinfer.runtime.definition import ModelDefinition
from localinfer.runtime.job import Job
from localinfer.runtime.pool import MAX_WORKERS, ModelPool, PoolOptions
from localinfer.runtime.scheduler import retry_after_seconds
from localinfer.runtime.stats import ModelStats
from localinfer.runtime.worker import DeviceWorker, WorkerState

logger = logging.getLogger(__name__)

__all__ = ["MAX_WORKERS", "ModelDefinition", "ServedModel"]


class ServedModel(ModelPool):
    """A running model: its pool, taking jobs, draining and health. Every method runs on
    the event loop."""

    def __init__(self, definition: ModelDefinition, **options: Unpack[PoolOptions]):
        super().__init__(definition, **options)
        self.stats = ModelStats()
        #: jobs submitted and not answered yet: none is left unanswered at shutdown
        self._live: set[Job] = set()
        #: ``anyio.current_time()`` by which a drain gives up on unanswered jobs
        self._drain_deadline: float | None = None
        #: when a request last arrived or finished (``time.monotonic``), for keep-alive
        self.last_used = time.monotonic()

    # -- drain ---------------------------------------------------------------------------

    def begin_drain(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs; queued and running ones may finish within ``drain_timeout_s``,
        then each one still unanswered gets :class:`ShuttingDown`. Returns at once; a
        second call keeps the first deadline."""
        if self._closing:
            return
        self._closing = True
        self._drain_deadline = anyio.current_time() + drain_timeout_s
        self.queue.close()
        self._check_settled()
        self._notify()
        self._spawn(self._enforce_drain_deadline)

    async def _enforce_drain_deadline(self) -> None:
        assert self._drain_deadline is not None
        with anyio.move_on_after(max(self._drain_deadline - anyio.current_time(), 0)):
            await self._all_stopped.wait()
        self._fail_live()

    def _fail_live(self) -> None:
        """Answer every job still unanswered (the drain is over): 503, the worker stops it."""
        if not self._live:
            return
        logger.warning(
            "model %s: %d request(s) unanswered at the drain deadline; answering 503",
            self.name,
            len(self._live),
        )
        for job in list(self._live):
            job.abort(  # cancelled (a running one stops at its next item) and answered
                ShuttingDown(
                    f"model {self.name!r} is shutting down and could not finish this "
                    "request within the drain timeout"
                )
            )

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs, let workers finish what is queued, then let them exit.

        Bounded by the drain deadline (set by :meth:`begin_drain`, here if not yet):
        past it, unanswered jobs get :class:`ShuttingDown` and busy workers are left.
        """
        self.begin_drain(drain_timeout_s)
        assert self._drain_deadline is not None
        with anyio.move_on_after(max(self._drain_deadline - anyio.current_time(), 0)) as scope:
            await self._all_stopped.wait()
        self._fail_live()  # (also if the deadline task could not be started)
        self._stopped = True
        if scope.cancelled_caught:
            logger.warning(
                "model %s: workers still busy after the %.0f s drain; leaving them",
                self.name,
                drain_timeout_s,
            )

    # -- state ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every worker has loaded and none is down."""
        return not self._closing and all(w.state == WorkerState.READY for w in self.workers)

    @property
    def engine(self) -> str | None:
        """What serves it, as its loaded handlers report (e.g. continuous batching or not)."""
        return next((w.engine for w in self.workers if w.engine), None)

    @property
    def failure(self) -> str | None:
        """Why the model cannot serve without help (every worker failed to load), if so."""
        if self._closing or self.can_serve:
            return None
        return "; ".join(sorted({w.error for w in self.workers if w.error})) or None

    @property
    def restarts(self) -> int:
        """Workers restarted after their thread died."""
        return self.supervisor.restarts

    @property
    def hangs(self) -> int:
        """Workers found hung so far (replaced or not)."""
        return self.supervisor.hangs

    @property
    def abandoned_workers(self) -> list[DeviceWorker]:
        """Hung workers given up on whose threads have not returned."""
        return list(self.supervisor.abandoned)

    @property
    def hung_workers(self) -> int:
        """Workers stuck in their handler now: left in place, or abandoned."""
        return self.supervisor.hung_workers

    @property
    def can_serve(self) -> bool:
        """Some worker is, or may soon be, able to take jobs."""
        return not self._closing and any(w.state in _MAY_SERVE for w in self._workers.values())

    @property
    def capabilities(self) -> dict[str, str]:
        """What the model offers: its definition's, plus ``task`` and ``model``."""
        return {
            **self.definition.capabilities,
            "task": self.definition.task,
            "model": self.name,
        }

    def cache_usage(self) -> dict[str, CacheUsage]:
        """Its workers' handler caches, summed by name (``Handler.cache_usage``)."""
        total: dict[str, CacheUsage] = {}
        for worker in self.workers:
            for name, use in worker.cache_usage().items():
                seen = total.get(name)
                total[name] = (
                    use
                    if seen is None
                    else CacheUsage(
                        bytes=seen["bytes"] + use["bytes"],
                        limit_bytes=seen["limit_bytes"] + use["limit_bytes"],
                        entries=seen["entries"] + use["entries"],
                    )
                )
        return total

    def replica_stats(self) -> dict[str, Any]:
        """Stats of the processes serving this model elsewhere (Ray Serve replicas: see
        :mod:`localinfer.ray.remote`); none for a model served here."""
        return {}

    def health(self) -> dict[str, Any]:
        return {
            "task": self.definition.task,
            "ready": self.ready,
            "draining": self._closing,
            "restarts": self.restarts,
            "hangs": self.hangs,
            "queue_depth": self.queue.depth,
            "target_workers": self.target_workers,
            "capabilities": self.capabilities,
            "engine": self.engine,
            "workers": [w.health() for w in self.workers],
            # threads stuck in a handler and replaced; they end if they ever return
            "abandoned_workers": [w.health() for w in self.supervisor.abandoned],
            "abandoned_device_memory_bytes": self.supervisor.abandoned_memory_bytes,
            # handlers' own threads given up on (a stalled engine's loop), still running
            "abandoned_threads": [t.health() for t in self.supervisor.abandoned_threads],
        }

    # -- requests ------------------------------------------------------------------------

    def submit(self, payload: Any, *, request_id: str | None = None) -> Job:
        """Queue a job, or raise at once (``QueueFull``, ``ModelNotReady``)."""
        if self._closing:
            raise ShuttingDown(f"model {self.name!r} is shutting down")
        if not self.can_serve:
            errors = "; ".join(sorted({w.error for w in self.workers if w.error}))
            raise ModelNotReady(
                f"model {self.name!r} cannot serve: " + (errors or "it is shutting down")
            )
        job = Job(
            payload,
            model=self.name,
            request_id=request_id or uuid.uuid4().hex,
            stream_buffer=self.definition.stream_buffer,
            stall_s=self.definition.stream_stall_s,
            on_finished=self._job_finished,
        )
        try:
            self.queue.submit(job)
        except QueueFull as exc:
            self.stats.rejected += 1
            exc.retry_after_s = retry_after_seconds(self.queue.depth, self.stats.throughput()[0])
            raise
        self.stats.submitted += 1
        self._live.add(job)
        self.last_used = time.monotonic()
        return job

    def _job_finished(self, job: Job) -> None:
        self._live.discard(job)
        self.stats.record(job)
        self.last_used = time.monotonic()


#: worker states that are, or may soon be, able to take jobs
_MAY_SERVE = frozenset({WorkerState.LOADING, WorkerState.READY, WorkerState.DEAD})
