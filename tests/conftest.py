"""Shared fixtures. Tiny-model builders live in ``tests/fixtures``; servers in ``tests/support``."""

from __future__ import annotations

import pytest

from tests.fixtures.tiny_chat import tiny_llama_dir
from tests.fixtures.tiny_encoders import minilm_dir, speech_wav, tiny_bert_dir, tiny_whisper_dir

__all__ = ["minilm_dir", "speech_wav", "tiny_bert_dir", "tiny_llama_dir", "tiny_whisper_dir"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
