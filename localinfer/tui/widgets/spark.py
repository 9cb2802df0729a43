"""A sparkline on a fixed scale: 0 at the bottom, ``maximum`` (or the largest value) on top.

Textual's ``Sparkline`` spans min..max of its data, so a flat 40 % CPU line jumps from
the bottom row to the top one on a 1 % wiggle; a monitor wants 0-100 % to stay 0-100 %.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

BARS = "▁▂▃▄▅▆▇█"


def spark_text(values: Sequence[float], width: int, maximum: float | None = None) -> str:
    """``values`` in ``width`` cells, newest on the right; several per cell: their max."""
    if width <= 0:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            max(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
            for i in range(width)
        ]
    top = maximum if maximum is not None else max(values, default=0.0)
    if top <= 0:
        cells = [BARS[0]] * len(values)
    else:
        last = len(BARS) - 1
        cells = [BARS[max(0, min(last, round(v / top * last)))] for v in values]
    return " " * (width - len(cells)) + "".join(cells)


class Spark(Widget):
    """One row of bars; set :attr:`values` to redraw."""

    DEFAULT_CSS = """
    Spark { height: 1; width: 1fr; color: $accent; }
    """

    def __init__(self, maximum: float | None = None, *, id: str | None = None):
        super().__init__(id=id)
        self.maximum = maximum
        self._values: list[float] = []

    @property
    def values(self) -> list[float]:
        return self._values

    @values.setter
    def values(self, values: Sequence[float]) -> None:
        self._values = list(values)
        self.refresh()

    def render(self) -> Text:
        return Text(spark_text(self._values, self.size.width, self.maximum))
