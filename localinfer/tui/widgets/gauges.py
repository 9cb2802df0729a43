"""Rows of numbers with a sparkline of their recent past, for the monitor screen."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label

from localinfer.client import DeviceStatistics, ModelStatistics
from localinfer.tui.widgets import units
from localinfer.tui.widgets.spark import Spark

#: samples kept per series: a minute at the monitor's one poll a second
HISTORY = 60


class History:
    """The last :data:`HISTORY` values of one series (unknown values count as 0)."""

    def __init__(self, size: int = HISTORY):
        self.values: deque[float] = deque(maxlen=size)

    def add(self, value: float | None) -> list[float]:
        self.values.append(0.0 if value is None else float(value))
        return list(self.values)


class DeviceRow(Vertical):
    """One device: its name and model on one line, utilisation / memory / temperature under
    it, each series with its sparkline."""

    DEFAULT_CSS = """
    DeviceRow { height: 2; }
    DeviceRow .title { height: 1; padding: 0 1; }
    DeviceRow .gauges { height: 1; padding: 0 1 0 3; }
    DeviceRow .label { width: auto; color: $text-muted; padding: 0 1 0 0; }
    DeviceRow .value { width: 6; }
    DeviceRow .memory { width: 20; }
    DeviceRow .temp { width: 8; padding: 0 0 0 1; }
    DeviceRow Spark { width: 1fr; margin: 0 1 0 0; }
    """

    def __init__(self, name: str):
        super().__init__()
        self.device_name = name
        self.utilization = History()
        self.memory = History()

    def compose(self) -> ComposeResult:
        yield Label(self.device_name, classes="title")
        with Horizontal(classes="gauges"):
            yield Label("util", classes="label")
            yield Label(units.UNKNOWN, classes="value", id="util")
            yield Spark(100.0, id="util-spark")
            yield Label("mem", classes="label")
            yield Label(units.UNKNOWN, classes="memory", id="mem")
            yield Spark(100.0, id="mem-spark")
            yield Label(units.UNKNOWN, classes="temp", id="temp")

    def show(self, device: DeviceStatistics) -> None:
        source = f" ({device.source})" if device.source else ""
        self.query_one(".title", Label).update(
            Text.assemble((device.name, "bold"), "  ", device.description, (source, "dim"))
        )
        self.query_one("#util", Label).update(units.percent(device.utilization_percent))
        self.query_one("#util-spark", Spark).values = self.utilization.add(
            device.utilization_percent
        )
        fraction = device.memory_fraction
        self.query_one("#mem", Label).update(
            units.memory(device.memory_used_bytes, device.memory_total_bytes)
        )
        self.query_one("#mem-spark", Spark).values = self.memory.add(
            None if fraction is None else fraction * 100
        )
        self.query_one("#temp", Label).update(units.temperature(device.temperature_c))


class ThroughputRow(Horizontal):
    """One model's requests/s and tokens/s over the last minute."""

    DEFAULT_CSS = """
    ThroughputRow { height: 1; padding: 0 1; }
    ThroughputRow .name { width: 22; padding: 0 1 0 0; text-wrap: nowrap; text-overflow: ellipsis; }
    ThroughputRow .label { width: auto; color: $text-muted; padding: 0 1 0 0; }
    ThroughputRow .value { width: 8; }
    ThroughputRow Spark { width: 1fr; margin: 0 1 0 0; }
    """

    def __init__(self, name: str):
        super().__init__()
        self.model_name = name
        self.requests = History()
        self.tokens = History()

    def compose(self) -> ComposeResult:
        yield Label(self.model_name, classes="name")
        yield Label("req/s", classes="label")
        yield Label(units.UNKNOWN, classes="value", id="rps")
        yield Spark(id="rps-spark")
        yield Label("tok/s", classes="label")
        yield Label(units.UNKNOWN, classes="value", id="tps")
        yield Spark(id="tps-spark")

    def show(self, stats: ModelStatistics) -> None:
        self.query_one("#rps", Label).update(units.rate(stats.requests_per_second))
        self.query_one("#rps-spark", Spark).values = self.requests.add(stats.requests_per_second)
        self.query_one("#tps", Label).update(units.rate(stats.tokens_per_second))
        self.query_one("#tps-spark", Spark).values = self.tokens.add(stats.tokens_per_second)
