"""The replicas' notice board: each model replica posts its health every second, and
the ingress reads the lot for ``/health``, ``/v1/stats`` and ``/metrics``.

A Serve request goes to whichever replica the router picks, so the ingress cannot ask
each replica in turn; the replicas tell the board instead. A replica that stops posting
(killed, scaled away) drops off after :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import time
from typing import Any

#: a replica not heard from for this long is gone from the board
STALE_AFTER_S = 5.0
#: how often each replica posts
POST_EVERY_S = 1.0


class ReplicaBoard:
    """A Serve deployment of one replica; holds reports in memory, nothing else."""

    def __init__(self) -> None:
        #: model -> replica id -> (monotonic time posted, report)
        self._reports: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}

    def post(self, model: str, replica: str, report: dict[str, Any]) -> None:
        self._reports.setdefault(model, {})[replica] = (time.monotonic(), report)

    def read(self) -> dict[str, list[dict[str, Any]]]:
        """Per model, the fresh reports, by replica id."""
        now = time.monotonic()
        fresh: dict[str, list[dict[str, Any]]] = {}
        for model, replicas in self._reports.items():
            for replica, (posted, report) in list(replicas.items()):
                if now - posted > STALE_AFTER_S:
                    del replicas[replica]
                else:
                    fresh.setdefault(model, []).append({"replica": replica, **report})
            fresh.setdefault(model, []).sort(key=lambda r: str(r["replica"]))
        return fresh
