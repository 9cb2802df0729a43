"""A local Ray instance that listens on loopback only: nothing reachable from outside.

``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a loopback
node address with the machine's own, and its agents then listen there. Ray's single-node
mode (what it uses on macOS and Windows, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps
the node on 127.0.0.1, and every Ray process listens on loopback but one: Serve's
per-replica gRPC server binds ``[::]`` (see docs/scale-out.md, "Ports").
"""

from __future__ import annotations

import os
from typing import Any

from localinfer.errors import ConfigurationError

LOOPBACK = "127.0.0.1"

#: read by Ray when it is imported: set before ``import ray``
LOOPBACK_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # a single node, its address 127.0.0.1
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report leaves the machine
}


#: a local instance localinfer starts: autoscaling metrics pushed each second instead of
#: each 10 s, so a replica is added seconds after the load arrives; and no idle Python
#: workers started ahead, whose start takes the CPU from the replicas starting beside
#: them (the test app came up in 50-57 s instead of 63 on two cores)
LOCAL_INSTANCE_ENVIRONMENT = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_enable_worker_prestart": "0",
    "RAY_prestart_worker_first_driver": "0",
}


def loopback_environment() -> None:
    """Ray's settings for a loopback-only instance, unless the environment says otherwise;
    call before Ray is imported (they are read then)."""
    for name, value in LOOPBACK_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def start_local_ray(**options: Any) -> None:
    """``ray.init`` of a new single-node instance on loopback, without the dashboard;
    refuses to go on if Ray would listen on the machine's address after all."""
    loopback_environment()
    for name, value in LOCAL_INSTANCE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # the instance's processes inherit them
    import ray

    ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, **options)
    node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise ConfigurationError(
            f"the local Ray instance took the address {node_ip}, not {LOOPBACK}: Ray was "
            "imported before localinfer could set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
            "(set it in the environment)"
        )


def free_loopback_port() -> int:
    """A port nobody uses on 127.0.0.1 (for Serve's proxy when the ingress replicas answer
    HTTP themselves)."""
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
