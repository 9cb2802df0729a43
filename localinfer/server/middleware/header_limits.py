"""Bounds on request headers: one line, all of them, how many (431).

hypercorn (h11) bounds only the bytes it buffers before the headers are complete
(``h11_max_incomplete_size``), and a request whose headers arrive within one read of it
passes whatever their size. These bounds are exact and answered in the OpenAI shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from localinfer.config import Settings
from localinfer.errors import HeaderFieldsTooLarge


@dataclass(frozen=True)
class HeaderLimits:
    """``line_bytes``: the request target, or one header's name and value;
    ``total_bytes``: every header's name and value; ``count``: headers."""

    line_bytes: int = 8192
    total_bytes: int = 32768
    count: int = 100

    @classmethod
    def for_settings(cls, settings: Settings) -> HeaderLimits:
        return cls(
            line_bytes=settings.max_header_line_bytes,
            total_bytes=settings.max_header_bytes,
            count=settings.max_header_count,
        )

    @property
    def incomplete_bytes(self) -> int:
        """What the HTTP server may buffer before the headers are complete: enough for
        every request these bounds answer themselves (the request line, the headers and
        the ``: `` and line ends hypercorn strips), so that only larger ones meet
        hypercorn's own refusal."""
        return self.line_bytes + self.total_bytes + 4 * self.count + 1024

    def violation(self, scope: Scope) -> HeaderFieldsTooLarge | None:
        """What is too large in ``scope``'s headers, or ``None``."""
        headers = scope["headers"]
        if len(headers) > self.count:
            return HeaderFieldsTooLarge(
                f"the request has {len(headers)} headers; at most {self.count} are accepted"
            )
        if (
            len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
            > self.line_bytes
        ):
            return HeaderFieldsTooLarge(
                f"the request target is longer than {self.line_bytes} bytes"
            )
        total = 0
        for name, value in headers:
            size = len(name) + len(value)
            if size > self.line_bytes:
                return HeaderFieldsTooLarge(
                    f"the header {name[:64].decode('latin-1')!r} is {size} bytes; at most "
                    f"{self.line_bytes} are accepted for one header line",
                    param=name[:64].decode("latin-1"),
                )
            total += size
        if total > self.total_bytes:
            return HeaderFieldsTooLarge(
                f"the request headers are {total} bytes together; at most "
                f"{self.total_bytes} are accepted"
            )
        return None
