"""``localinfer serve``: build the settings and model definitions, check the bind, run."""

from __future__ import annotations

import argparse
import logging

from localinfer.config import Settings, load_settings
from localinfer.errors import ConfigurationError
from localinfer.log import configure_logging
from localinfer.runtime.devices import resolve_devices
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.targets import import_target, user_code_definition
from localinfer.server.app import create_app
from localinfer.server.runner import check_bind_is_safe, run

logger = logging.getLogger(__name__)


def catalog_definitions(
    specs: list[str], trust_remote_code: list[str], devices: list[str], settings: Settings
) -> list[ModelDefinition]:
    """Definitions for ``--models``: aliases, cached repo ids and local paths."""
    if not specs:
        return []
    from localinfer.plugins import discover
    from localinfer.runtime.resolve import model_definition, resolve

    plugins = discover()
    unknown_trust = set(trust_remote_code) - set(specs)
    if unknown_trust:
        raise ConfigurationError(
            f"--trust-remote-code names {', '.join(sorted(unknown_trust))}, not in --models"
        )
    return [
        model_definition(
            resolve(spec, plugins, trust_remote_code=spec in trust_remote_code),
            devices=devices,
            workers_per_device=settings.workers,
            max_queue=settings.max_queue,
            stream_buffer=settings.stream_buffer,
        )
        for spec in specs
    ]


def serve_command(args: argparse.Namespace) -> int:
    settings = load_settings(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        device=args.device,
        workers=args.workers,
        request_timeout_s=args.request_timeout_s,
        max_queue=args.max_queue,
        loop=args.loop,
        log_level=args.log_level,
    )
    check_bind_is_safe(settings)  # before loading anything
    configure_logging(settings.log_level)
    if args.name and len(args.targets) > 1:
        raise ConfigurationError("--name applies to a single target")

    devices = resolve_devices(settings.device)
    model_specs = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    definitions: list[ModelDefinition] = catalog_definitions(
        model_specs, args.trust_remote_code, devices, settings
    )
    if args.targets:
        targets = [import_target(spec) for spec in args.targets]
    elif definitions:
        targets = []
    else:
        from localinfer.examples.demo import DEMO_MODELS

        targets = list(DEMO_MODELS)
        logger.info(
            "no models given: serving the demo models %s", ", ".join(t.name for t in DEMO_MODELS)
        )
    definitions += [
        user_code_definition(
            target,
            name=args.name,
            devices=devices,
            workers_per_device=settings.workers,
            factory=True if args.factory else None,
            max_batch_size=args.max_batch_size,
            batch_timeout_s=args.batch_timeout,
            max_queue=settings.max_queue,
            stream_buffer=settings.stream_buffer,
        )
        for target in targets
    ]
    logger.info(
        "serving %s (devices: %s)", ", ".join(d.name for d in definitions), ", ".join(devices)
    )
    run(create_app(definitions, settings), settings)
    return 0
