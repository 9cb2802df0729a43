"""``localinfer tui``: the Textual app, against ``--url`` or a server started in its loop."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from localinfer.errors import ConfigurationError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tui",
        help="a terminal UI: download and load models, watch the machine, chat",
        description="Without --url, a server (127.0.0.1, a free port) runs inside the app and "
        "stops with it; with --url, the app drives that server (local or remote).",
    )
    p.add_argument("--url", help="a running server (default: start one here)")
    p.add_argument("--api-key", help="the server's API key (also LOCALINFER_API_KEY)")
    local = p.add_argument_group("the server started without --url (as `localinfer serve`)")
    local.add_argument(
        "--models",
        metavar="A,B",
        help="load these at start: catalog aliases, cached repo ids or local paths",
    )
    local.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps, or a comma-separated list")
    local.add_argument("--workers", type=int, help="worker threads per device (default 1)")
    local.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    local.add_argument(
        "--offline", action="store_true", default=None, help="never download (HF_HUB_OFFLINE=1)"
    )
    local.add_argument(
        "--keep-alive",
        type=float,
        dest="keep_alive_s",
        metavar="SECONDS",
        help="unload a model idle this long",
    )
    local.add_argument(
        "--log-file",
        type=Path,
        help="where the server's log goes (default: localinfer's user log folder)",
    )
    local.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def tui_command(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("textual") is None:
        raise ConfigurationError("the TUI needs Textual: pip install 'localinfer[tui]'")
    from localinfer.tui.backend import Backend, RemoteBackend
    from localinfer.tui.launcher import EmbeddedBackend, log_to_file, run

    log_to_file(args.log_file or default_log_file(), args.log_level or "warning")
    backend: Backend
    if args.url:
        backend = RemoteBackend(args.url, args.api_key)
    else:
        models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
        backend = EmbeddedBackend(
            models,
            device=args.device or "auto",
            workers=args.workers or 1,
            port=args.port,
            api_key=args.api_key,
            offline=args.offline,
            keep_alive_s=args.keep_alive_s,
        )
    run(backend)
    return 0


def default_log_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("localinfer")) / "tui.log"
