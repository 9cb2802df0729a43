"""localinfer plugin: text to speech with hibari (Apache-2.0, onnxruntime, one CPU core).

Registered through the ``localinfer.plugins`` entry point. Nothing heavy is imported here:
``hibari`` (and onnxruntime) load only when a model served by this handler loads.
"""

from __future__ import annotations

from localinfer.handlers.tasks import SPEECH
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, Plugin

__version__ = "0.1.0"

HANDLER = "hibari"

plugin = Plugin(
    name="hibari",
    version=__version__,
    handlers=[
        HandlerSpec(
            name=HANDLER,
            task=SPEECH,
            target="localinfer_hibari.handler:HibariHandler",
            description="hibari text to speech: Kokoro-distilled English voices, 24 kHz (ONNX)",
        ),
    ],
    catalog=[
        CatalogEntry(
            alias="hibari",
            repo="maureesewilliams/hibari",
            task=SPEECH,
            handler=HANDLER,
            description="hibari English TTS (7.9 MB a voice; 'heart' ships in the wheel)",
            files=("voices/*.onnx",),
            origin="hibari",
            # pip install hibari-tts (Apache-2.0): the voice 'heart' is in the package
            packaged="hibari/assets",
        ),
        CatalogEntry(
            alias="hibari-all",
            repo="maureesewilliams/hibari",
            task=SPEECH,
            handler=HANDLER,
            description="hibari with every voice (heart, emma, fenrir, fable, kore), "
            "distilled from Kokoro-82M; `localinfer pull hibari-all` fetches them",
            files=("voices/*.onnx",),
            origin="hibari",
        ),
    ],
)
