"""The ``localinfer`` command. Parses arguments; heavy imports happen inside subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from localinfer import __version__


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over an OpenAI-compatible HTTP API",
        description="Serve your own code (module:Class) and catalog models. With no target, "
        "serve the built-in demo models.",
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
    p.add_argument("--loop", choices=["asyncio", "trio"], help="event loop (default asyncio)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localinfer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"localinfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from localinfer.errors import LocalInferError

    try:
        if args.command == "serve":
            from localinfer.cli.serve import serve_command

            return serve_command(args)
    except LocalInferError as exc:
        print(f"localinfer: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
