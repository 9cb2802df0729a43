"""``localinfer serve --ray [ADDRESS]``: the same command, run as a Ray Serve application.

Without an address a local Ray instance starts on loopback (no dashboard): nothing
leaves the machine. With one (``auto``, ``ray://head:10001``) the application goes to
that cluster, whose nodes must have localinfer (and the models' packages) installed.
The API key never goes into Serve's application arguments (Serve shows them): a local
instance's processes inherit it as ``LOCALINFER_API_KEY``; a cluster's nodes must have it
in their environment.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import threading
from typing import Any

from localinfer.config import Settings
from localinfer.errors import ConfigurationError
from localinfer.ray.spec import RayAppConfig

logger = logging.getLogger(__name__)

APP_NAME = "localinfer"


def app_config(
    args: argparse.Namespace, settings: Settings, overrides: dict[str, Any], specs: list[str]
) -> RayAppConfig:
    """What the replicas need from this command: its flags win over their environment."""
    # the key goes by the environment (see serve_on_ray), never in Serve's arguments
    given = {k: v for k, v in overrides.items() if v is not None and k != "api_key"}
    # the replicas may run on machines without this one's config file or environment
    given["replicas"] = {
        name: replicas.model_dump() for name, replicas in settings.replicas.items()
    }
    if args.name:
        raise ConfigurationError("--name is not supported with --ray (set a 'name' attribute)")
    return RayAppConfig(
        models=specs,
        targets=list(args.targets),
        examples=bool(args.examples),
        trust_remote_code=list(args.trust_remote_code),
        settings=given,
        api_key_required=settings.api_key is not None,
    )


def local_cpus(config: RayAppConfig, settings: Settings) -> int:
    """Logical CPUs of a local instance: what the replicas reserve, at least the cores.

    Ray's CPUs are scheduling tokens; on a laptop, three models asking one CPU each must
    not wait forever for a fourth core that does not exist.
    """
    wanted = config.ingress_num_cpus * config.ingress_replicas + sum(
        settings.replica_settings(s.name).num_cpus * settings.replica_settings(s.name).max_replicas
        for s in config.sources()
    )
    return max(os.cpu_count() or 1, math.ceil(wanted))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_on_ray(
    args: argparse.Namespace, settings: Settings, overrides: dict[str, Any], specs: list[str]
) -> int:
    from localinfer.ray.local import (
        direct_ingress_environment,
        free_loopback_port,
        loopback_environment,
        start_local_ray,
    )

    if settings.ray_direct_ingress and args.ray != "local":
        raise ConfigurationError(
            "ray_direct_ingress is for a local instance (--ray without an address); on a "
            "cluster set RAY_SERVE_ENABLE_DIRECT_INGRESS=1 on the nodes and put a load "
            "balancer over the ingress replicas' ports (docs/scale-out.md)"
        )
    if args.ray == "local":
        loopback_environment()  # before Ray is imported
        if settings.ray_direct_ingress:
            os.environ.update(direct_ingress_environment(settings.port))
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ConfigurationError("--ray needs Ray Serve: pip install 'localinfer[ray]'") from None
    from localinfer.ray.app import build_app

    config = app_config(args, settings, overrides, specs)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C, starting or not
    try:
        if args.ray == "local":
            if settings.api_key_value:  # Ray's processes inherit this one's environment
                os.environ["LOCALINFER_API_KEY"] = settings.api_key_value
            start_local_ray(num_cpus=local_cpus(config, settings))
        else:
            ray.init(address=args.ray)
        # with direct ingress the ingress replica takes --port (on --host: the same
        # options), and Serve's proxy, which it bypasses, another port
        port = free_loopback_port() if settings.ray_direct_ingress else settings.port
        serve.start(http_options={"host": settings.host, "port": port})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        logger.info(
            "localinfer on Ray Serve at http://%s:%d (Ctrl-C stops it)",
            settings.host,
            settings.port,
        )
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
        if args.ray == "local":
            serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
    return 0
