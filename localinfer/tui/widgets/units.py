"""Numbers as the screens print them: sizes, rates, percentages, with "-" for unknown."""

from __future__ import annotations

from localinfer.client.progress import human_bytes

UNKNOWN = "-"


def size(count: int | None) -> str:
    return UNKNOWN if count is None else human_bytes(count)


def percent(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.0f}%"


def rate(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.1f}"


def millis(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.0f}"


def temperature(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.0f}°C"


def memory(used: int | None, total: int | None) -> str:
    if used is None:
        return UNKNOWN
    return human_bytes(used) if total is None else f"{human_bytes(used)} / {human_bytes(total)}"
