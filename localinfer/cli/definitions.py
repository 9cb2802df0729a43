"""Model definitions for ``--models`` specs (aliases, repo ids, local paths), pulled first
when missing: shared by ``localinfer serve`` and the Ray Serve replicas it may start."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from localinfer.config import Settings
from localinfer.errors import ConfigurationError
from localinfer.runtime.definition import ModelDefinition


def check_isolated_names(settings: Settings, served: Collection[str]) -> None:
    """Every model ``isolate`` names is served (``*`` names them all)."""
    unknown = set(settings.isolate) - set(served) - {"*"}
    if unknown:
        raise ConfigurationError(
            f"--isolate names {', '.join(sorted(unknown))}, not a model served here "
            f"({', '.join(sorted(served)) or 'none'})"
        )


def catalog_definitions(
    specs: list[str],
    trust_remote_code: list[str],
    devices: list[str],
    settings: Settings,
    names: Sequence[str] | None = None,
) -> list[ModelDefinition]:
    """Definitions for ``--models``: aliases, repo ids and local paths. A model not
    downloaded yet is pulled first, with progress (refused at once when offline). ``names``:
    what each is served as (default: as named), which the ``isolate`` setting names."""
    if not specs:
        return []
    from localinfer.cli.models import resolve_or_pull
    from localinfer.plugins import discover
    from localinfer.runtime.resolve import model_definition

    plugins = discover()
    unknown_trust = set(trust_remote_code) - set(specs)
    if unknown_trust:
        raise ConfigurationError(
            f"--trust-remote-code names {', '.join(sorted(unknown_trust))}, not in --models"
        )
    return [
        model_definition(
            resolve_or_pull(
                spec,
                plugins,
                offline=settings.offline,
                trust_remote_code=spec in trust_remote_code,
            ),
            devices=devices,
            workers_per_device=settings.workers,
            max_queue=settings.max_queue,
            stream_buffer=settings.stream_buffer,
            isolation=settings.isolation(name),
        )
        for spec, name in zip(specs, names or specs, strict=True)
    ]
