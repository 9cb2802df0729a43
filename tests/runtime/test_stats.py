"""Per-model counters: the last minute's throughput (``Retry-After`` comes from it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from localinfer.runtime import stats as stats_module
from localinfer.runtime.stats import ModelStats


def _finish(stats: ModelStats, monkeypatch: pytest.MonkeyPatch, at: float, chunks: int) -> None:
    monkeypatch.setattr(stats_module.time, "monotonic", lambda: at)
    job: Any = SimpleNamespace(outcome="ok", latency_ms=5.0, queue_ms=1.0, chunks=chunks)
    stats.record(job)


def test_throughput_counts_only_the_last_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = ModelStats()
    for second in range(100):  # one request a second, of `second` chunks
        _finish(stats, monkeypatch, float(second), second)
    rps, cps = stats.throughput(now=100.0)
    in_window = range(40, 100)  # finished at most 60 s before now
    assert rps == pytest.approx(len(in_window) / 60)
    assert cps == pytest.approx(sum(in_window) / 60)
    assert stats.throughput(now=1000.0) == (0.0, 0.0)  # a quiet minute: nothing


def test_throughput_past_the_bound_of_recent_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = ModelStats()
    for i in range(5000):  # more than the 4096 kept: the oldest fall out, their chunks too
        _finish(stats, monkeypatch, 10.0 + i * 0.001, 2)
    rps, cps = stats.throughput(now=20.0)
    span = 20.0 - (10.0 + (5000 - 4096) * 0.001)  # since the oldest one kept
    assert rps == pytest.approx(4096 / span)
    assert cps == pytest.approx(2 * 4096 / span)
