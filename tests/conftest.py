"""Shared fixtures. Tiny-model builders live in ``tests/fixtures``; servers in ``tests/support``."""

from __future__ import annotations

import pytest

from tests.fixtures.hub_server import hf_home, hub, tiny_bert_repo
from tests.fixtures.tiny_chat import tiny_llama_dir
from tests.fixtures.tiny_encoders import minilm_dir, speech_wav, tiny_bert_dir, tiny_whisper_dir

__all__ = [
    "hf_home",
    "hub",
    "minilm_dir",
    "speech_wav",
    "tiny_bert_dir",
    "tiny_bert_repo",
    "tiny_llama_dir",
    "tiny_whisper_dir",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
