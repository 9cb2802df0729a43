"""The ``localinfer`` command. Parses arguments; heavy imports happen inside subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from localinfer._version import __version__


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over an OpenAI-compatible HTTP API",
        description="Serve your own code (module:Class) and catalog models. With no target and "
        "no --models, serve the real models shipped in installed packages (--demo).",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="MODULE:ATTR",
        help="a class with infer(), a LitAPI-style class, an instance, or a factory",
    )
    p.add_argument(
        "--models",
        metavar="A,B",
        help="catalog aliases, cached Hugging Face repo ids, or local model paths",
    )
    p.add_argument(
        "--trust-remote-code",
        metavar="MODEL",
        action="append",
        default=[],
        help="let this model run code from its repository (off by default)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="serve the small real models installed as Python packages, offline (SmolLM2 chat, "
        "all-MiniLM embeddings, Whisper tiny.en): the default when nothing else is named",
    )
    p.add_argument(
        "--examples",
        action="store_true",
        help="serve the toy example models (echo, countdown, tone, squares)",
    )
    p.add_argument("--name", help="model name for a single target (default: its name/class)")
    p.add_argument(
        "--factory",
        action="store_true",
        help="the target is a callable returning the model, called once per worker",
    )
    p.add_argument("--workers", type=int, help="worker threads per device (default 1)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps, or a comma-separated list")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--api-key", help="require this key (also LOCALINFER_API_KEY)")
    p.add_argument(
        "--allow-slow-fallback",
        action="store_true",
        default=None,
        help="serve without a capability an installed package lacks (e.g. continuous "
        "batching on an old transformers: one request at a time) instead of refusing to start",
    )
    p.add_argument("--certfile", help="TLS certificate chain, PEM (with --keyfile)")
    p.add_argument("--keyfile", help="TLS private key, PEM (with --certfile)")
    p.add_argument(
        "--allowed-hosts",
        metavar="A,B",
        help="Host header names accepted besides loopback and the bind address ('*': any); "
        "default: none on 127.0.0.1, any on another address",
    )
    p.add_argument(
        "--cors-origins",
        metavar="A,B",
        help="web page origins allowed to call the API from a browser (default: none)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        dest="request_timeout_s",
        help="per-request deadline in seconds (504 after it)",
    )
    p.add_argument("--max-queue", type=int, help="queued requests per model before 429")
    p.add_argument("--max-batch-size", type=int, help="micro-batch size for batching models")
    p.add_argument(
        "--batch-timeout",
        type=float,
        help="micro-batch window in seconds (how long to wait to fill a batch)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never download: a model not in the cache is an error (also HF_HUB_OFFLINE=1)",
    )
    p.add_argument(
        "--keep-alive",
        type=float,
        dest="keep_alive_s",
        metavar="SECONDS",
        help="unload a model idle this long; its next request loads it again (default: never)",
    )
    p.add_argument(
        "--load-on-demand",
        action="store_true",
        default=None,
        help="a request naming a cached catalog model that is not loaded loads it",
    )
    p.add_argument(
        "--isolate",
        metavar="A,B",
        help="run these models' handlers in processes of their own ('*': every model but "
        "the --examples toys): their Python then leaves the server's loop alone, and a crash "
        "or hang ends only that process",
    )
    p.add_argument(
        "--isolated-priority",
        choices=["nice", "idle"],
        help="the --isolate models' processes: 'nice' (below the server's loop, the default) "
        "or 'idle' (Linux: only when no other program wants the core; the server then "
        "answers at once under any load)",
    )
    p.add_argument("--loop", choices=["asyncio", "trio"], help="event loop (default asyncio)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="serve on Ray Serve (pip install 'localinfer[ray]'): one deployment per model; "
        "ADDRESS of a running cluster ('auto', ray://host:10001), or none for a local "
        "instance on loopback. Replicas per model: see docs/scale-out.md",
    )


def build_parser(*, plugin_commands: bool = False) -> argparse.ArgumentParser:
    """The parser of built-in commands; with ``plugin_commands``, plugins' are listed too."""
    from localinfer.cli.models import add_parsers as add_model_parsers
    from localinfer.cli.plugins import add_plugin_commands, add_plugins_parser
    from localinfer.cli.tui import add_parser as add_tui_parser

    parser = argparse.ArgumentParser(prog="localinfer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"localinfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    add_model_parsers(sub)
    add_plugins_parser(sub)
    add_tui_parser(sub)
    if plugin_commands:
        add_plugin_commands(sub, taken=set(sub.choices))
    return parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    from localinfer.errors import LocalInferError

    first = argv[0] if argv else ""
    try:
        if first and not first.startswith("-") and first not in _commands(parser):
            from localinfer.cli.plugins import run_plugin_command

            status = run_plugin_command(first, argv[1:])  # a plugin parses its own arguments
            if status is not None:
                return status
        elif not first or first in ("-h", "--help"):
            parser = build_parser(plugin_commands=True)
    except LocalInferError as exc:
        print(f"localinfer: error: {exc.message}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0

    try:
        if args.command == "serve":
            from localinfer.cli.serve import serve_command

            return serve_command(args)
        if args.command == "tui":
            from localinfer.cli.tui import tui_command

            return tui_command(args)
        if args.command == "plugins":
            from localinfer.cli.plugins import plugins_command

            return plugins_command(args)
        if args.command in ("pull", "ls", "rm", "catalog"):
            from localinfer.cli import models

            command = getattr(models, f"{args.command}_command")
            exit_code: int = command(args)
            return exit_code
    except LocalInferError as exc:
        print(f"localinfer: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
