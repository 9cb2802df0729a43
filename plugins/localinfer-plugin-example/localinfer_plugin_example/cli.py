"""``localinfer parrot [--greeting TEXT] [--max-tokens N] WORDS...``: a plugin's own subcommand.

localinfer hands a plugin command the rest of the command line; the command parses it
itself and returns the exit status. This one runs the parrot in-process, no server.
"""

from __future__ import annotations

import argparse

from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import GenerationRequest
from localinfer.hub.packaged import packaged_path
from localinfer_plugin_example.parrot import ParrotChatHandler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="localinfer parrot", description=__doc__)
    parser.add_argument("words", nargs="+", help="what to say to the parrot")
    parser.add_argument("--greeting", help="what the parrot says first")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    weights = packaged_path("localinfer_plugin_example/weights/parrot")
    assert weights is not None, "the package is installed: its weights are too"
    options = {} if args.greeting is None else {"greeting": args.greeting}
    handler = ParrotChatHandler(ModelSource(str(weights), options=options))
    handler.load("cpu")
    request = GenerationRequest(
        messages=({"role": "user", "content": " ".join(args.words)},),
        max_new_tokens=args.max_tokens,
    )
    for piece in handler.reply(request):
        print(piece, end="", flush=True)
    print()
    return 0
