"""``localinfer pull / ls / rm / catalog``: the models on this machine, Ollama-style.

Everything lives in the standard Hugging Face cache (``HF_HOME``), shared with
transformers and every other HF tool: what they downloaded shows here and is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localinfer.cli.progress import DownloadDisplay, human_bytes
from localinfer.errors import ConfigurationError, ModelNotDownloaded
from localinfer.hub.download import DownloadResult, download_model, download_target, run_cancellable
from localinfer.hub.model_ids import check_model_id
from localinfer.plugins import PluginSet, discover

if TYPE_CHECKING:
    from localinfer.runtime.resolve import ResolvedModel


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = sub.add_parser(
        "pull",
        help="download models into the Hugging Face cache, with progress",
        description="Download catalog models or Hugging Face repos: only the files a handler "
        "needs (safetensors, config, tokenizer). Interrupted downloads resume.",
    )
    pull.add_argument("models", nargs="+", metavar="MODEL", help="catalog alias or org/name")
    pull.add_argument("--revision", help="branch, tag or commit (default: the catalog's, or main)")

    ls = sub.add_parser(
        "ls",
        help="list cached models: size, task, handler",
        description="Models in the Hugging Face cache (HF_HOME), whichever tool downloaded "
        "them, with the task they serve and the handler that would serve them.",
    )
    ls.add_argument("--json", action="store_true", help="print JSON")

    rm = sub.add_parser("rm", help="remove models from the Hugging Face cache")
    rm.add_argument("models", nargs="+", metavar="MODEL", help="catalog alias or org/name")
    rm.add_argument("--revision", help="remove only this commit or branch (default: all)")

    catalog = sub.add_parser(
        "catalog",
        help="list catalog models (built-in, plugins, your catalog.toml)",
        description="Aliases you can pull and serve. Add your own to catalog.toml in "
        "localinfer's config directory (~/.config/localinfer on Linux), or to the file "
        "named by LOCALINFER_CATALOG; see docs/models.md.",
    )
    catalog.add_argument("--json", action="store_true", help="print JSON")


# -- pull ---------------------------------------------------------------------------------


def pull(spec: str, plugins: PluginSet, *, revision: str | None = None) -> DownloadResult:
    """Download ``spec`` with a progress display; Ctrl-C cancels it cleanly."""
    target = download_target(check_model_id(spec), plugins.catalog, revision=revision)
    with DownloadDisplay(spec) as show:
        return run_cancellable(
            lambda cancel: download_model(target, on_progress=show, cancel=cancel)
        )


def pull_command(args: argparse.Namespace) -> int:
    plugins = discover()
    for spec in args.models:
        result = pull(spec, plugins, revision=args.revision)
        cached = result.total_bytes - result.fetched_bytes
        reused = f", {human_bytes(cached)} already cached" if cached else ""
        print(
            f"{spec}: {len(result.files)} files, {human_bytes(result.total_bytes)}{reused} "
            f"in {result.elapsed_s:.1f} s -> {result.path}"
        )
    return 0


def resolve_or_pull(
    spec: str, plugins: PluginSet, *, offline: bool, trust_remote_code: bool = False
) -> ResolvedModel:
    """``resolve(spec)``; a model not downloaded yet is pulled first (with progress), or,
    offline, refused at once with the command that would fetch it."""
    from localinfer.hub.dirs import hf_cache_dir, offline_mode
    from localinfer.runtime.resolve import resolve

    try:
        return resolve(spec, plugins, trust_remote_code=trust_remote_code)
    except ModelNotDownloaded as missing:
        if offline_mode(offline):
            raise ModelNotDownloaded(
                f"{missing.message} ({hf_cache_dir()}) — and downloads are off "
                "(--offline or HF_HUB_OFFLINE=1)",
                model=missing.model,
                param="model",
            ) from None
        print(f"{spec} is not downloaded yet: pulling it first", file=sys.stderr)
        pull(spec, plugins)
    return resolve(spec, plugins, trust_remote_code=trust_remote_code)


# -- ls -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedRow:
    repo_id: str
    aliases: tuple[str, ...]
    task: str | None
    handler: str | None
    size_bytes: int
    revisions: int
    last_accessed: float
    path: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "aliases": list(self.aliases), "servable": bool(self.handler)}


def cached_rows(plugins: PluginSet) -> list[CachedRow]:
    """Every cached model, with what would serve it (catalog entry first, then its files)."""
    from localinfer.hub.listing import cached_models

    rows = []
    for model in cached_models():
        entries = [e for e in plugins.catalog.values() if e.repo == model.repo_id]
        task, handler = (
            (entries[0].task, entries[0].handler)
            if entries
            else _served_by(model.snapshot, plugins)
        )
        rows.append(
            CachedRow(
                repo_id=model.repo_id,
                aliases=tuple(sorted(e.alias for e in entries)),
                task=task,
                handler=handler,
                size_bytes=model.size_bytes,
                revisions=len(model.revisions),
                last_accessed=model.last_accessed,
                path=str(model.snapshot),
            )
        )
    return rows


def _served_by(snapshot: Path, plugins: PluginSet) -> tuple[str | None, str | None]:
    """The task a snapshot's files say it serves, and the handler that would serve it."""
    from localinfer.runtime.resolve import detect_task

    try:
        task = detect_task(snapshot)
    except (ConfigurationError, OSError, ValueError):
        return None, None
    try:
        return task, plugins.handler_for_task(task).name
    except ConfigurationError:
        return task, None


def ls_command(args: argparse.Namespace) -> int:
    rows = cached_rows(discover())
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    if not rows:
        print("no models in the Hugging Face cache yet: `localinfer pull <model>` fetches one")
        _print_gguf_cache()
        return 0
    table = [
        [
            row.repo_id,
            ",".join(row.aliases) or "-",
            row.task or "?",
            row.handler or "- (no handler)",
            human_bytes(row.size_bytes),
            _ago(row.last_accessed),
        ]
        for row in rows
    ]
    _print_table(["MODEL", "ALIAS", "TASK", "HANDLER", "SIZE", "USED"], table)
    _print_gguf_cache()
    return 0


def _print_gguf_cache() -> None:
    """The converted GGUF copies (see ``localinfer.handlers.gguf_cache``), if any."""
    from localinfer.handlers.gguf_cache import cache_root, converted_copies, max_bytes

    copies = converted_copies()
    if not copies:
        return
    total = sum(c.size_bytes for c in copies)
    limit = max_bytes()
    bound = "no limit" if limit is None else f"limit {human_bytes(limit)}"
    print(f"\nGGUF conversions in {cache_root()}: {human_bytes(total)} ({bound})")
    rows = [
        [Path(c.source).name, c.dtype, human_bytes(c.size_bytes), _ago(c.last_used)]
        for c in reversed(copies)
    ]
    _print_table(["GGUF FILE", "DTYPE", "SIZE", "USED"], rows)


# -- rm -----------------------------------------------------------------------------------


def rm_command(args: argparse.Namespace) -> int:
    from localinfer.hub.listing import remove_cached

    catalog = discover().catalog
    for spec in args.models:
        check_model_id(spec)
        repo_id = catalog[spec].repo if spec in catalog else spec
        removal = remove_cached(repo_id, args.revision)
        count = len(removal.revisions)
        print(
            f"removed {repo_id} ({count} revision{'s' if count != 1 else ''}), "
            f"freed {human_bytes(removal.freed_bytes)}"
        )
    return 0


# -- catalog ------------------------------------------------------------------------------


def catalog_command(args: argparse.Namespace) -> int:
    from localinfer.hub.cache import available_locally

    plugins = discover()
    entries = sorted(plugins.catalog.values(), key=lambda e: e.alias)
    rows = [(entry, available_locally(entry)) for entry in entries]
    if args.json:
        data = [
            {
                "alias": e.alias,
                "repo": e.repo,
                "task": e.task,
                "handler": e.handler,
                "description": e.description,
                "origin": e.origin,
                "cached": cached,
            }
            for e, cached in rows
        ]
        print(json.dumps(data, indent=2))
    else:
        table = [
            [e.alias, e.task, e.repo, e.origin, "yes" if cached else "-", e.description]
            for e, cached in rows
        ]
        _print_table(["ALIAS", "TASK", "REPO", "FROM", "CACHED", "DESCRIPTION"], table)
    for source, problem in sorted(plugins.errors.items()):
        print(f"warning: {source}: {problem}", file=sys.stderr)
    return 0


# -- formatting ---------------------------------------------------------------------------


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        cells = (str(cell).ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())


def _ago(timestamp: float) -> str:
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"
