"""Binding rules and the in-loop server."""

from __future__ import annotations

import pytest

from localinfer.errors import ConfigurationError
from localinfer.server.runner import check_bind_is_safe, is_loopback
from tests.support import settings


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "::", "192.168.1.10", "example.com"])


def test_non_loopback_bind_needs_an_api_key() -> None:
    check_bind_is_safe(settings(host="127.0.0.1"))
    with pytest.raises(ConfigurationError, match="no API key is set"):
        check_bind_is_safe(settings(host="0.0.0.0"))
    check_bind_is_safe(settings(host="0.0.0.0", api_key="k"))
