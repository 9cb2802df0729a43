"""The localinfer plugin template: copy this package, rename it, replace the handlers.

This module is what the ``localinfer.plugins`` entry point names, and it is imported
when localinfer discovers plugins: keep it free of heavy imports. Handlers and commands
are named by import path and imported only when a model using them loads (or the
command runs).
"""

from __future__ import annotations

from localinfer.handlers.tasks import CHAT, INFER
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import CommandSpec, HandlerSpec, Plugin

__version__ = "0.1.0"

PARROT = "example-parrot"
TRANSCRIPT_SUMMARY = "example-transcript-summary"

plugin = Plugin(
    name="example",
    version=__version__,
    # the plugin API this plugin was written against: checked when localinfer discovers it
    api_version="1.0",
    handlers=[
        HandlerSpec(
            name=PARROT,
            task=CHAT,
            target="localinfer_plugin_example.parrot:ParrotChatHandler",
            description="a toy chat model that repeats the last message, word by word",
            capabilities={"lang": "en", "family": "parrot"},
        ),
        HandlerSpec(
            name=TRANSCRIPT_SUMMARY,
            task=INFER,
            target="localinfer_plugin_example.pipeline:TranscriptSummaryHandler",
            description="transcribe audio with one served model, summarise it with another",
            capabilities={"pipeline": "transcribe+summarise"},
        ),
    ],
    catalog=[
        CatalogEntry(
            alias=PARROT,
            repo="localinfer/example-parrot",
            task=CHAT,
            handler=PARROT,
            description="toy streaming chat model (the plugin template's)",
            # "weights" shipped inside this package: served with no download
            packaged="localinfer_plugin_example/weights/parrot",
        ),
        CatalogEntry(
            alias=TRANSCRIPT_SUMMARY,
            repo="localinfer/example-transcript-summary",
            task=INFER,
            handler=TRANSCRIPT_SUMMARY,
            description="whisper-tiny, then example-parrot: audio in, transcript and summary out",
            packaged="localinfer_plugin_example/weights/transcript-summary",
        ),
    ],
    commands=[
        CommandSpec(
            name="parrot",
            help="talk to the example parrot, no server needed",
            target="localinfer_plugin_example.cli:main",
        ),
    ],
)
