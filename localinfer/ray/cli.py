"""``localinfer serve --ray [ADDRESS]``: the same command, run as a Ray Serve application.

Without an address a local Ray instance starts on loopback (no dashboard): nothing
leaves the machine, and the ingress replicas answer ``--port`` themselves (direct
ingress, :mod:`localinfer.ray.direct`). With one (``auto``, ``ray://head:10001``) the
application goes to that cluster, whose nodes must have localinfer (and the models'
packages) installed, and requests go through Serve's proxy.
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

from localinfer.cli.definitions import check_isolated_names
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
    # the ingress replicas bind these themselves with direct ingress (see serve_on_ray)
    given.update(
        host=settings.host, port=settings.port, ray_direct_ingress=direct_ingress(args, settings)
    )
    if args.name:
        raise ConfigurationError("--name is not supported with --ray (set a 'name' attribute)")
    return RayAppConfig(
        models=specs,
        targets=list(args.targets),
        examples=bool(args.examples),
        trust_remote_code=list(args.trust_remote_code),
        settings=given,
        api_key_required=settings.api_key is not None,
        ingress_replicas=settings.ray_ingress_replicas,
    )


def direct_ingress(args: argparse.Namespace, settings: Settings) -> bool:
    """Whether the ingress replicas answer HTTP themselves (:mod:`localinfer.ray.direct`):
    by default on a local instance, where Serve's proxy only costs (docs/scale-out.md)."""
    direct = settings.ray_direct_ingress
    if direct is None:
        direct = args.ray == "local"
    elif direct and args.ray != "local":
        raise ConfigurationError(
            "ray_direct_ingress is for a local instance (--ray without an address): on a "
            "cluster, set it in the application's settings (a serve config file: "
            "build_app's settings) and put a load balancer over the nodes' --port "
            "(docs/scale-out.md)"
        )
    if direct and settings.port == 0:
        raise ConfigurationError(
            "with direct ingress the ingress replicas share --port: name one (not 0), or "
            "set ray_direct_ingress = false"
        )
    return direct


def local_cpus(config: RayAppConfig, settings: Settings) -> int:
    """Logical CPUs of a local instance: what the replicas reserve, at least the cores.

    Ray's CPUs are scheduling tokens; on a laptop, three models asking one CPU each must
    not wait forever for a fourth core that does not exist.
    """
    in_ingress = config.in_ingress(settings)
    per_ingress = config.ingress_num_cpus + sum(
        settings.replica_settings(name).num_cpus for name in in_ingress
    )
    wanted = per_ingress * config.ingress_replicas + sum(
        settings.replica_settings(s.name).num_cpus * settings.replica_settings(s.name).max_replicas
        for s in config.sources()
        if s.name not in in_ingress  # each ingress replica runs its own copy: counted above
    )
    return max(os.cpu_count() or 1, math.ceil(wanted))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_on_ray(
    args: argparse.Namespace, settings: Settings, overrides: dict[str, Any], specs: list[str]
) -> int:
    from localinfer.ray.local import free_loopback_port, loopback_environment, start_local_ray

    direct = direct_ingress(args, settings)
    if args.ray == "local":
        loopback_environment()  # before Ray is imported
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ConfigurationError("--ray needs Ray Serve: pip install 'localinfer[ray]'") from None
    from localinfer.ray.app import build_app

    config = app_config(args, settings, overrides, specs)
    # before Ray starts (build_app checks it again, for serve config files)
    check_isolated_names(settings, [source.name for source in config.sources()])
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C, starting or not
    try:
        if args.ray == "local":
            if settings.api_key_value:  # Ray's processes inherit this one's environment
                os.environ["LOCALINFER_API_KEY"] = settings.api_key_value
            start_local_ray(num_cpus=local_cpus(config, settings))
        else:
            ray.init(address=args.ray)
        # with direct ingress the ingress replicas take --host:--port, and Serve's proxy,
        # which they bypass, a free port on loopback
        if direct:
            serve.start(http_options={"host": "127.0.0.1", "port": free_loopback_port()})
        else:
            serve.start(http_options={"host": settings.host, "port": settings.port})
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
