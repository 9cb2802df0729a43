"""How much CPU something *outside* the measurement used while a point was measured.

The machine is shared: another job's test run can take the server core for seconds
and halve a server's throughput, and a median of three does not save a point when
the disturbance lasts a minute. So every point records the "foreign" load: all CPU
time the kernel accounted (steal included) minus what the server's process group,
this process and its waited-for children (wrk) used, in cores. Before each point the
bench waits for a quiet moment, and a point that was disturbed anyway is measured
again, both within a time budget. Linux only (``/proc``), like ``taskset``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """Busy time of all CPUs since boot: user, nice, system, irq, softirq, steal."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _group_seconds(pgid: int | None) -> float:
    """CPU time of the live processes in process group ``pgid`` (all their threads)."""
    if pgid is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # fields after "comm": state ppid pgrp ... utime stime
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class ForeignLoad:
    """Start it before a point, call :meth:`cores` after it (server still running)."""

    #: the server's process group (``None``: no server, e.g. in-process runs)
    server_pgid: int | None
    _busy: float = 0.0
    _ours: float = 0.0
    _wall: float = 0.0

    def __post_init__(self) -> None:
        self._busy = _busy_seconds()
        self._ours = _group_seconds(self.server_pgid) + _own_seconds()
        self._wall = os.times().elapsed

    def cores(self) -> float:
        """Average number of cores used by others since the start."""
        wall = os.times().elapsed - self._wall
        if wall <= 0:
            return 0.0
        busy = _busy_seconds() - self._busy
        ours = _group_seconds(self.server_pgid) + _own_seconds() - self._ours
        return max(0.0, (busy - ours) / wall)


class QuietWindow:
    """Waits, within a budget shared by a whole run, until others leave the CPU alone.

    Sampling the foreign load for half a second is far cheaper than measuring a point
    twice, so each point first waits for a quiet moment; a point still disturbed is
    measured again only while the budget lasts. The budget bounds the suite's time.
    """

    def __init__(self, budget_s: float, max_cores: float, sample_s: float = 0.5):
        self.budget_s = budget_s
        self.max_cores = max_cores
        self.sample_s = sample_s
        self.waited_s = 0.0
        self.retries = 0

    def wait(self, server_pgid: int | None = None) -> None:
        while self.budget_s >= self.sample_s:
            load = ForeignLoad(server_pgid)
            time.sleep(self.sample_s)
            if load.cores() <= self.max_cores:
                return
            self.budget_s -= self.sample_s
            self.waited_s += self.sample_s

    def quiet(self, cores: float) -> bool:
        return cores <= self.max_cores

    def may_retry(self, cost_s: float) -> bool:
        """Spend ``cost_s`` of the budget on measuring a disturbed point again, if left."""
        if self.budget_s < cost_s:
            return False
        self.budget_s -= cost_s
        self.retries += 1
        return True

    def report(self) -> dict[str, float]:
        return {"waited_s": self.waited_s, "retries": self.retries, "budget_left_s": self.budget_s}
