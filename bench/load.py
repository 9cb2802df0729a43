"""The load generator: ``wrk`` (C, epoll, keep-alive), the same for every server.

A Python client on the one spare core would top out near the servers' own rate and
measure itself; wrk drives well over 50k req/s from one thread, so the servers are
the bottleneck. A Lua script sets the JSON POST body and prints the numbers as JSON.
wrk's latencies are per request in a closed loop (no coordinated-omission correction):
fine for comparing servers under the same load, not for SLO curves.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import Pinning

_MARK = "BENCH_JSON "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    "MARK", summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    connections: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    #: socket errors and timeouts
    errors: int
    #: answers that were not 2xx/3xx
    non_2xx: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lua_script(body: object) -> Path:
    payload = json.dumps(body, separators=(",", ":"))
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(payload)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + _DONE.replace("MARK", _MARK)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-", delete=False) as f:
        f.write(script)
    return Path(f.name)


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


class WrkRun:
    """One wrk process, started now and collected with :meth:`result`."""

    def __init__(
        self,
        url: str,
        *,
        body: object,
        connections: int,
        seconds: int,
        pinning: Pinning,
        timeout_s: float = 10.0,
    ):
        self.connections = connections
        self.seconds = seconds
        self._script = _lua_script(body)
        threads = max(1, min(connections, len((pinning.client or "0").split(","))))
        command = [
            *pinning.client_prefix(),
            "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
            f"--timeout={max(1, round(timeout_s))}s", "-s", str(self._script), url,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(self) -> LoadResult:
        try:
            out, err = self._process.communicate(timeout=self.seconds + 60)
        finally:
            self._script.unlink(missing_ok=True)
        line = next((ln for ln in out.splitlines() if ln.startswith(_MARK)), None)
        if self._process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({self._process.returncode}): {err.strip()[:500]}")
        raw = json.loads(line[len(_MARK) :])
        elapsed = raw["duration_us"] / 1e6
        return LoadResult(
            connections=self.connections,
            seconds=round(elapsed, 3),
            requests=raw["requests"],
            rps=raw["requests"] / elapsed,
            p50_ms=raw["p50_us"] / 1e3,
            p90_ms=raw["p90_us"] / 1e3,
            p99_ms=raw["p99_us"] / 1e3,
            max_ms=raw["max_us"] / 1e3,
            mean_ms=raw["mean_us"] / 1e3,
            errors=raw["connect_errors"]
            + raw["read_errors"]
            + raw["write_errors"]
            + raw["timeouts"],
            non_2xx=raw["status_errors"],
        )


def run_wrk(
    url: str, *, body: object, connections: int, seconds: int, pinning: Pinning
) -> LoadResult:
    """Drive ``url`` with ``connections`` keep-alive clients for ``seconds``; wait for it."""
    return WrkRun(
        url, body=body, connections=connections, seconds=seconds, pinning=pinning
    ).result()
