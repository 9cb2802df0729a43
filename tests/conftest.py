"""Shared fixtures. Tiny-model builders live in ``tests/fixtures``; servers in ``tests/support``."""

from __future__ import annotations

import os
import tempfile

# The suite never reads the machine's own settings or user catalog: set before any
# discovery (plugins.discover() is cached per process) and inherited by subprocesses.
_ISOLATED = tempfile.mkdtemp(prefix="localinfer-tests-")
os.environ.setdefault("LOCALINFER_CATALOG", os.path.join(_ISOLATED, "catalog.toml"))
os.environ.setdefault("LOCALINFER_CONFIG", os.path.join(_ISOLATED, "config.toml"))

import pytest  # noqa: E402  (after the environment is set)

from tests.fixtures.hub_server import hf_home, hub, tiny_bert_repo  # noqa: E402
from tests.fixtures.tiny_chat import tiny_llama_dir  # noqa: E402
from tests.fixtures.tiny_encoders import minilm_dir, speech_wav, tiny_bert_dir, tiny_whisper_dir  # noqa: E402
from tests.fixtures.tiny_rerankers import tiny_cross_encoder_dir  # noqa: E402
from tests.fixtures.tiny_vision import tiny_vlm_dir  # noqa: E402

__all__ = [
    "hf_home",
    "hub",
    "minilm_dir",
    "speech_wav",
    "tiny_bert_dir",
    "tiny_bert_repo",
    "tiny_cross_encoder_dir",
    "tiny_llama_dir",
    "tiny_vlm_dir",
    "tiny_whisper_dir",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
