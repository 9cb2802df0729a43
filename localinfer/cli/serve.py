"""``localinfer serve``: build the settings and model definitions, check the bind, run."""

from __future__ import annotations

import argparse
import logging

from localinfer.config import load_settings
from localinfer.errors import ConfigurationError
from localinfer.log import configure_logging
from localinfer.runtime.devices import resolve_devices
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.targets import import_target, user_code_definition
from localinfer.server.app import create_app
from localinfer.server.runner import check_bind_is_safe, run

logger = logging.getLogger(__name__)


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
    if args.targets:
        targets = [import_target(spec) for spec in args.targets]
    else:
        from localinfer.examples.demo import DEMO_MODELS

        targets = list(DEMO_MODELS)
        logger.info(
            "no models given: serving the demo models %s", ", ".join(t.name for t in DEMO_MODELS)
        )
    definitions: list[ModelDefinition] = [
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
