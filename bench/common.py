"""What every benchmark shares: CPU pinning, repeats, medians, tables, result files,
starting and stopping servers (``free_port``, ``wait_ready``, ``served``) and the
generated blocks in ``docs/benchmarks.md`` (``write_docs_block``).

The machine is small and shared, so each point is repeated and reported as a median,
and every ratio is taken against a baseline measured in the same repeat.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the servers and the load clients run on (``None``: not pinned)."""

    server: str | None
    client: str | None

    def server_prefix(self) -> list[str]:
        return ["taskset", "-c", self.server] if self.server else []

    def client_prefix(self) -> list[str]:
        return ["taskset", "-c", self.client] if self.client else []

    def pin_this_process_to_client(self) -> None:
        """The orchestrator (and its /health probe) stays off the server's core."""
        if self.client and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {int(c) for c in self.client.split(",")})


def default_pinning() -> Pinning:
    """Server on CPU 0, clients on the rest, when there are at least two CPUs and taskset."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 or not _has("taskset"):
        return Pinning(None, None)
    return Pinning(str(cpus[0]), ",".join(str(c) for c in cpus[1:]))


def _has(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def rotated(items: Sequence[str], by: int) -> list[str]:
    """``items`` rotated by ``by``: each repeat starts with a different server, so drift on
    a shared machine is spread over all of them instead of always hitting the last."""
    by %= max(len(items), 1)
    return [*items[by:], *items[:by]]


def free_port() -> int:
    """A port nobody listens on right now (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(
    url: str,
    process: subprocess.Popen[Any],
    path: str = "/ready",
    timeout_s: float = 300.0,
    interval_s: float = 0.2,
) -> None:
    """Wait until ``GET url+path`` answers 200; fail at once if ``process`` exits first."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) before it was ready")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"{url} was not ready after {timeout_s:.0f} s")


def stop_server(process: subprocess.Popen[Any], grace_s: float = 30.0, quiet: bool = False) -> None:
    """SIGTERM the server's process group (started with ``start_new_session``), SIGKILL
    whatever is left of the group after ``grace_s``: worker processes it spawned (LitServe)
    are waited for too, so nothing outlives a run."""
    group = process.pid  # started with start_new_session: its pid is its group id
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    if not quiet:
        log(f"  server group {group} still alive after {grace_s:g} s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(5)


@contextlib.contextmanager
def served(
    command: Sequence[str],
    url: str,
    *,
    ready_path: str = "/ready",
    timeout_s: float = 300.0,
    log_path: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    grace_s: float = 30.0,
    quiet_stop: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server started from ``command`` in a session of its own, ready at ``url``, and
    stopped on leaving (its output to ``log_path``, else inherited; ``env`` replaces the
    environment)."""
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log_path.open("wb")) if log_path is not None else None
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_ready(url, process, ready_path, timeout_s, interval_s=0.1)
            yield process
        finally:
            stop_server(process, grace_s, quiet=quiet_stop)


def serve_command(port: int, *flags: str) -> list[str]:
    """``localinfer serve`` on loopback at ``port``, logging warnings only, with ``flags``."""
    return [
        sys.executable,
        "-m",
        "localinfer",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *flags,
    ]


def write_docs_block(doc: Path, begin: str, end: str, block: str, heading: str) -> None:
    """Put ``block`` (which starts with ``begin`` and ends with ``end``) into ``doc``: in
    place of the block there, else under ``heading``, else at the end under it."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    elif heading in text:
        text = text.replace(heading, f"{heading}\n\n{block}", 1)
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    doc.write_text(text)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def machine() -> dict[str, Any]:
    """Enough to tell two result files' machines apart."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for dist in ("localinfer", "starlette", "hypercorn", "anyio", "litserve", "uvicorn", "torch"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "-"
    return {
        "git": _git_state(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "wrk": _wrk_version(),
        "versions": versions,
    }


def _git_state() -> str:
    """``<short commit>`` plus ``+dirty`` when the measured tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    return (head or "-") + ("+dirty" if dirty.strip() else "")


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    return (out.stdout or out.stderr).split("[")[0].strip()


def write_results(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>-<utc time>.json`` plus ``<name>-latest.json``; returns the former."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = json.dumps(data, indent=2, sort_keys=False)
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


def read_latest(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}-latest.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class ForeignCpu:
    """Cores that processes other than ``pids`` used since the last :meth:`read`: the load a
    benchmark did not make itself (the load average counts its own servers and client,
    which on two cores keep it near 2 on a quiet machine)."""

    def __init__(self, pids: Iterable[int]) -> None:
        import psutil

        self._processes = [psutil.Process(pid) for pid in pids]
        self._last = self._now()

    def _now(self) -> tuple[float, float, float]:
        import psutil

        times = psutil.cpu_times()
        # Linux counts guest time inside user time already; steal stays (other VMs)
        counted_twice = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0) - counted_twice
        ours = 0.0
        for process in self._processes:
            with contextlib.suppress(psutil.Error):  # one that ended counts no more
                own = process.cpu_times()
                ours += own.user + own.system
        return time.monotonic(), busy, ours

    def read(self) -> float:
        """Cores the others used on average since the last read (or since creation)."""
        (then, busy_then, ours_then), now = self._last, self._now()
        self._last = now
        wall = now[0] - then
        return max(0.0, (now[1] - busy_then) - (now[2] - ours_then)) / wall if wall > 0 else 0.0


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub table; also what the scripts print, so the console and docs agree."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the tables."""
    print(message, file=sys.stderr, flush=True)
