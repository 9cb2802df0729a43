"""localinfer plugin: Kokoro-82M text to speech through kokoro-onnx (GPL-3.0-or-later).

Registered through the ``localinfer.plugins`` entry point. Nothing heavy is imported here:
``kokoro_onnx`` (onnxruntime, phonemizer, espeak-ng) loads only when a model served by this
handler loads. kokoro-onnx itself is MIT, but it phonemizes with ``phonemizer`` and the
espeak-ng library of ``espeakng-loader``, both GPL-3.0-or-later, so this distribution is
licensed likewise; localinfer itself never depends on it.
"""

from __future__ import annotations

from localinfer.handlers.tasks import SPEECH
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, Plugin

__version__ = "0.1.0"

HANDLER = "kokoro"

#: the ONNX export of Kokoro-82M v1.0 on the Hub: ``onnx/model*.onnx`` and one raw
#: float32 style table per voice in ``voices/*.bin``
KOKORO_REPO = "onnx-community/Kokoro-82M-v1.0-ONNX"

plugin = Plugin(
    name="kokoro",
    version=__version__,
    handlers=[
        HandlerSpec(
            name=HANDLER,
            task=SPEECH,
            target="localinfer_kokoro.handler:KokoroHandler",
            description="Kokoro-82M text to speech through kokoro-onnx: 24 kHz, many "
            "voices and languages (espeak-ng phonemes)",
        ),
    ],
    catalog=[
        CatalogEntry(
            alias="kokoro-82m",
            repo=KOKORO_REPO,
            task=SPEECH,
            handler=HANDLER,
            description="Kokoro-82M v1.0, float32 (326 MB) with every voice; "
            "`localinfer pull kokoro-82m` fetches it",
            files=("onnx/model.onnx", "voices/*.bin"),
            origin="kokoro",
            options={"model_file": "onnx/model.onnx"},
        ),
        CatalogEntry(
            alias="kokoro-82m-q8",
            repo=KOKORO_REPO,
            task=SPEECH,
            handler=HANDLER,
            description="Kokoro-82M v1.0, 8-bit weights (92 MB) with every voice",
            files=("onnx/model_quantized.onnx", "voices/*.bin"),
            origin="kokoro",
            options={"model_file": "onnx/model_quantized.onnx"},
        ),
    ],
)
