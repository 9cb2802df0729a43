"""Fixtures for the real-model tests (the shared ones come from ``tests/conftest.py``)."""

from __future__ import annotations

from tests.fixtures.ct2_whisper import whisper_tiny_en_hf_dir

__all__ = ["whisper_tiny_en_hf_dir"]
