"""Where a request's CPU goes on the Ray path: CPU milliseconds per request, per process.

Starts plain ``localinfer serve`` and ``localinfer serve --ray`` (the no-op in its own
replica, then in the ingress, then in its own replica behind direct ingress), drives
each with 16 wrk clients, and reads every server process's CPU time (user + system,
``psutil``) before and after: CPU ms per request is the difference over the requests
answered. On a 2-core machine this, not wall time, is what the Ray path costs: what one
process spends the others cannot.

    python -m bench.ray_cpu [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict

import psutil

from bench.common import log, markdown_table
from bench.load import run_wrk
from bench.models import REQUEST_BODY
from bench.ray_overhead import CLIENTS, DIRECT, IN_INGRESS, REPLICAS, UNPINNED, server


def _group(title: str) -> str:
    """A process's role, from its title (Ray sets ``ray::<Actor>`` titles)."""
    match = re.match(r"ray::ServeReplica:[^:]+:([^.\s]+)", title)
    if match:
        return f"replica {match.group(1)}"
    for known in ("ProxyActor", "ServeController", "gcs_server", "raylet", "Dashboard", "IDLE"):
        if known in title:
            return known
    return "localinfer serve" if "localinfer" in title and "serve" in title else "other"


def _cpu_by_group(root: int) -> dict[str, float]:
    """CPU seconds so far of ``root`` and every descendant, by role."""
    try:
        parent = psutil.Process(root)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return {}
    spent: dict[str, float] = defaultdict(float)
    for process in processes:
        try:
            times = process.cpu_times()
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        spent[_group(title)] += times.user + times.system
    return dict(spent)


def per_request(args: list[str], name: str, env: dict[str, str], seconds: int) -> dict[str, float]:
    with server(args, name, env) as port:
        pid = next(
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and str(port) in " ".join(p.info["cmdline"])
        )
        url = f"http://127.0.0.1:{port}/v1/infer/noop"
        run_wrk(url, body=REQUEST_BODY, connections=CLIENTS, seconds=2, pinning=UNPINNED)
        before = _cpu_by_group(pid)
        result = run_wrk(
            url, body=REQUEST_BODY, connections=CLIENTS, seconds=seconds, pinning=UNPINNED
        )
        after = _cpu_by_group(pid)
    requests = max(1, result.requests)
    costs = {
        group: round(1e3 * (after[group] - before.get(group, 0.0)) / requests, 3) for group in after
    }
    costs = {group: ms for group, ms in costs.items() if ms >= 0.005}
    costs["total"] = round(sum(costs.values()), 3)
    costs["req/s"] = round(result.rps, 1)
    log(f"{name}: {json.dumps(costs)}")
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    options = parser.parse_args()
    model = ["bench.models:NoOp"]
    runs = {
        "plain": per_request(model, "plain", {}, options.seconds),
        "ray": per_request(
            [*model, "--ray"],
            "ray",
            {"LOCALINFER_REPLICAS": json.dumps(REPLICAS)},
            options.seconds,
        ),
        "ray-ingress": per_request(
            [*model, "--ray"],
            "ray-ingress",
            {"LOCALINFER_REPLICAS": json.dumps(IN_INGRESS)},
            options.seconds,
        ),
        # direct ingress (no proxy), the no-op in a replica of its own
        "ray-direct-remote": per_request(
            [*model, "--ray"],
            "ray-direct-remote",
            {"LOCALINFER_REPLICAS": json.dumps(REPLICAS), **DIRECT},
            options.seconds,
        ),
    }
    groups = sorted({g for costs in runs.values() for g in costs} - {"total", "req/s"})
    rows = [[g, *(str(runs[r].get(g, "")) for r in runs)] for g in [*groups, "total", "req/s"]]
    print(markdown_table(["process (CPU ms / request)", *runs], rows))
    log(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
