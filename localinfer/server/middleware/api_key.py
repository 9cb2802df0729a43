"""The API key check: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import hmac


def key_matches(key: bytes, api_key: bytes | None, authorization: bytes | None) -> bool:
    """Whether the request presents ``key`` (constant-time comparison)."""
    presented = api_key
    if presented is None:
        # starlette decodes header bytes as latin-1; the key is compared as the bytes
        # sent, so a key that is not ASCII matches when the client sends it as UTF-8
        scheme, _, credentials = (authorization or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = credentials.strip().encode("latin-1")
    return hmac.compare_digest(presented, key)
