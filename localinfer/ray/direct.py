"""Direct ingress: every ingress replica answers HTTP on ``--host:--port`` itself.

Serve's proxy costs a request more CPU than the whole of plain ``localinfer serve``
(docs/benchmarks.md). Serve 2.60's own direct ingress (``RAY_SERVE_ENABLE_DIRECT_INGRESS``)
gives each ingress replica a port of its own from a range and expects a load balancer
(its HAProxy mode, or yours) in front; a one-port range fits one replica only, and a
restarted replica waits out the port's quarantine. Here instead each ingress replica
serves the app with localinfer's own server (hypercorn, as ``localinfer serve``: the same
limits, refusals and drain) on one shared ``SO_REUSEPORT`` socket address: the kernel
spreads new connections over the replicas listening, and a replica that dies or restarts
just leaves or rejoins the set. Serve's proxy still answers on its own port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from localinfer.config import Settings
from localinfer.server.runner import serving


def answer_directly(app: Starlette, settings: Settings) -> None:
    """Make ``app``'s lifespan also serve it on ``settings.host:port`` (shared socket):
    from once its registry is open (its models reachable) until its shutdown begins."""
    lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan_and_server(app: Starlette) -> AsyncIterator[Any]:
        # the server must not run the lifespan again: it is this one (run by Serve)
        async with lifespan(app) as state, serving(app, settings, reuse_port=True, lifespan=False):
            yield state

    app.router.lifespan_context = lifespan_and_server
