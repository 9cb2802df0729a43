"""Shared fixtures. Tiny-model builders live in ``tests/fixtures``; servers in ``tests/support``."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
