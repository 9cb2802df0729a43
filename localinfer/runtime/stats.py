"""Per-model counters and latency percentiles, updated on the event loop only."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from localinfer.runtime.job import Job

_WINDOW_S = 60.0


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[rank]


@dataclass
class ModelStats:
    """What happened to a model's requests, for ``/v1/stats`` and ``/metrics``."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    chunks: int = 0
    # (finished_at, latency_ms, queue_ms, chunks) of recent requests
    recent: deque[tuple[float, float, float, int]] = field(
        default_factory=lambda: deque(maxlen=4096)
    )
    #: the chunks of the requests in ``recent`` (kept as they come and go)
    _window_chunks: int = 0

    @property
    def in_flight(self) -> int:
        return self.submitted - self.succeeded - self.failed - self.cancelled

    def record(self, job: Job) -> None:
        if job.outcome == "ok":
            self.succeeded += 1
        elif job.outcome == "failed":
            self.failed += 1
        else:
            self.cancelled += 1
        self.chunks += job.chunks
        if job.outcome == "ok" and job.latency_ms is not None:
            if len(self.recent) == self.recent.maxlen:  # the oldest falls out of the window
                self._window_chunks -= self.recent[0][3]
            self.recent.append((time.monotonic(), job.latency_ms, job.queue_ms or 0.0, job.chunks))
            self._window_chunks += job.chunks

    def _forget_before(self, now: float) -> None:
        """Drop what left the last minute. Entries arrive in time order, so they leave from
        the left: each 429's ``Retry-After`` costs what expired, not a scan of all 4096."""
        recent = self.recent
        while recent and now - recent[0][0] > _WINDOW_S:
            self._window_chunks -= recent.popleft()[3]

    def throughput(self, now: float | None = None) -> tuple[float, float]:
        """(requests/s, chunks/s) over the last minute."""
        now = time.monotonic() if now is None else now
        self._forget_before(now)
        if not self.recent:
            return 0.0, 0.0
        span = max(now - self.recent[0][0], 1.0)
        return len(self.recent) / span, self._window_chunks / span

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        self._forget_before(now)
        window = list(self.recent)
        latencies = sorted(r[1] for r in window)
        queue = sorted(r[2] for r in window)
        rps, cps = self.throughput(now)
        return {
            "submitted": self.submitted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "in_flight": self.in_flight,
            "requests_per_second": round(rps, 3),
            "chunks_per_second": round(cps, 3),
            "latency_ms": {f"p{q}": percentile(latencies, q) for q in (50, 95, 99)},
            "queue_ms": {f"p{q}": percentile(queue, q) for q in (50, 95, 99)},
        }
