"""Whether a browser's ``Origin`` is this server (cross-site requests)."""

from __future__ import annotations

from urllib.parse import urlsplit

from localinfer.server.middleware.hosts import split_host

#: methods a cross-site page may send without a preflight that change nothing
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` names the server the request reached (``Host``)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    name, port = split_host(host)
    return parts.hostname.rstrip(".") == name and (origin_port or default) == (port or default)
