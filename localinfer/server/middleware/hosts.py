"""Which ``Host`` headers the server answers (DNS rebinding)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

#: names that always mean this machine: no web page can be served from them but ours
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def split_host(value: str) -> tuple[str, int | None]:
    """``"Example.COM:8000"`` → ``("example.com", 8000)``; ``"[::1]:80"`` → ``("::1", 80)``.

    A value that is not a host (a path, spaces, a port that is not a number) gives ``("", None)``.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif value.count(":") > 1:  # a bare IPv6 address (a bind address, never a valid Host)
        name, port_text = value, ""
    else:
        name, _, port_text = value.partition(":")
    name = name.rstrip(".")
    if port_text and not port_text.isdigit():
        return "", None
    if not name or any(c in name for c in "/\\ @?#"):
        return "", None
    return name, int(port_text) if port_text else None


def _is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AllowedHosts:
    """Which ``Host`` headers the server answers: ``None`` patterns means any.

    A pattern is a name (``box.lan``), a name and port (``box.lan:8000``), or a suffix
    wildcard (``*.lan``). Loopback names (any port) are always allowed: no other site's
    page can have them as its origin, so they cannot be used for DNS rebinding.
    """

    patterns: frozenset[tuple[str, int | None]] | None

    @classmethod
    def for_bind(cls, bind_host: str, allowed: Iterable[str] | None) -> AllowedHosts:
        """Loopback names and the bind address, plus ``allowed``; with ``allowed`` unset,
        any host when the bind is not loopback (reachable by name from the LAN)."""
        bind_name = split_host(bind_host)[0]
        if allowed is None:
            if not _is_loopback_name(bind_name):
                return cls(None)
            allowed = ()
        patterns = set()
        for entry in allowed:
            if entry.strip() == "*":
                return cls(None)
            name, port = split_host(entry)
            if name:
                patterns.add((name, port))
        patterns.add((bind_name, None))
        return cls(frozenset(patterns))

    @property
    def any(self) -> bool:
        return self.patterns is None

    def allows(self, host_header: str) -> bool:
        if self.patterns is None:
            return True
        name, port = split_host(host_header)
        if not name:
            return False
        if _is_loopback_name(name):
            return True
        for pattern, pattern_port in self.patterns:
            if pattern_port is not None and pattern_port != port:
                continue
            if pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
                return True
        return False
