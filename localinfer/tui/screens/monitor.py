"""Monitor: the server machine's devices and each model's load, about once a second.

A model on Ray Serve adds a row per replica to the models table and its devices (on the
replica's own node) to the devices panel.

Everything is read from ``/v1/stats`` (devices included), so a remote server shows its own
GPUs. Polling runs in an exclusive worker (a slow answer is never stacked behind another)
and pauses while the screen is hidden. A failed poll says so on the status line once,
not in a notification every second.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Label, Static

from localinfer import errors as e
from localinfer.client import DeviceStatistics, Stats
from localinfer.client.results import device_statistics_from
from localinfer.tui.screens.base import AppScreen
from localinfer.tui.widgets import units
from localinfer.tui.widgets.gauges import DeviceRow, ThroughputRow
from localinfer.tui.widgets.topbar import TopBar

COLUMNS = (
    ("model", "model"),
    ("task", "task"),
    ("queue", "queue"),
    ("in flight", "in_flight"),
    ("req/s", "rps"),
    ("tok/s", "tps"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("ok/fail/cancel", "outcomes"),
    # last: long ("transformers continuous batching x32"), it may scroll out of a narrow view
    ("engine", "engine"),
)


class MonitorScreen(AppScreen):
    """Devices (utilisation, memory, temperature) and models (queue, throughput, latency)."""

    DEFAULT_CSS = """
    MonitorScreen #body { height: 1fr; }
    MonitorScreen #devices { height: auto; }
    MonitorScreen #models { height: auto; max-height: 12; }
    MonitorScreen #throughput { height: auto; }
    MonitorScreen .empty { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "poll", "Refresh"),
        Binding("p", "toggle_pause", "Pause"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._paused = False
        self._failing = False
        self.samples = 0

    def compose(self) -> ComposeResult:
        yield TopBar("monitor")
        with VerticalScroll(id="body"):
            yield Label("Devices (the server's machine)", classes="section-title")
            yield Vertical(id="devices")
            yield Label("Models (latency in ms)", classes="section-title")
            yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
            yield Label("Throughput, last minute", classes="section-title")
            yield Vertical(id="throughput")
        yield Static("", id="status", classes="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#models", DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        interval = self.localinfer.poll_interval_s
        if interval is not None:
            self._timer = self.set_interval(interval, self.action_poll, pause=True)

    def on_screen_resume(self) -> None:
        if self._timer is not None and not self._paused:
            self._timer.resume()
            self.action_poll()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def action_toggle_pause(self) -> None:
        if self._timer is None:
            return
        self._paused = not self._paused
        if self._paused:
            self._timer.pause()
            self.query_one("#status", Static).update("paused: p resumes")
        else:
            self._timer.resume()
            self.action_poll()

    def action_poll(self) -> None:
        self.poll()

    @work(exclusive=True, group="stats", exit_on_error=False)
    async def poll(self) -> None:
        status = self.query_one("#status", Static)
        try:
            stats = await (await self.client()).stats()
        except e.LocalInferError as exc:
            status.update(f"cannot read /v1/stats: {exc.message}")
            status.add_class("-error")
            if not self._failing:  # once per outage, not every second
                self._failing = True
                self.report(exc)
            return
        self._failing = False
        status.remove_class("-error")
        await self.show(stats)
        interval = self.localinfer.poll_interval_s
        every = f"every {interval:g} s" if interval else "on r"
        status.update(f"from /v1/stats {every} · r refreshes · p pauses")

    async def show(self, stats: Stats) -> None:
        """Draw one sample (also how tests feed the screen without a server)."""
        self.samples += 1
        await self._show_devices(stats)
        self._show_table(stats)
        await self._show_throughput(stats)

    async def _show_devices(self, stats: Stats) -> None:
        container = self.query_one("#devices", Vertical)
        rows = {row.device_name: row for row in container.query(DeviceRow)}
        devices = [*stats.devices, *replica_devices(stats)]
        for device in devices:
            if device.name not in rows:
                rows[device.name] = DeviceRow(device.name)
                await container.mount(rows[device.name])
            rows[device.name].show(device)
        for name, row in rows.items():
            if name not in {d.name for d in devices}:
                await row.remove()
        await self._placeholder(container, not devices, "the server reports no devices")

    def _show_table(self, stats: Stats) -> None:
        table = self.query_one("#models", DataTable)
        table.clear()
        for name, s in sorted(stats.models.items()):
            table.add_row(
                name,
                s.task or units.UNKNOWN,
                str(s.queue_depth),
                str(s.in_flight),
                units.rate(s.requests_per_second),
                units.rate(s.tokens_per_second),
                units.millis(s.latency_p50_ms),
                units.millis(s.latency_p95_ms),
                f"{s.succeeded}/{s.failed}/{s.cancelled}",
                s.engine or units.UNKNOWN,
                key=name,
            )
            for replica in s.replicas:  # a model on Ray Serve: one row per replica
                tag = f"{name} · {replica.raw.get('replica', '?')}"
                table.add_row(
                    tag,
                    "replica",
                    str(replica.queue_depth),
                    str(replica.in_flight),
                    units.rate(replica.requests_per_second),
                    "",
                    units.millis(replica.latency_p50_ms),
                    units.millis(replica.latency_p95_ms),
                    f"{replica.succeeded}/{replica.failed}/{replica.cancelled}",
                    replica.engine or "",
                    key=tag,
                )

    async def _show_throughput(self, stats: Stats) -> None:
        container = self.query_one("#throughput", Vertical)
        rows = {row.model_name: row for row in container.query(ThroughputRow)}
        for name, model in sorted(stats.models.items()):
            if name not in rows:
                rows[name] = ThroughputRow(name)
                await container.mount(rows[name])
            rows[name].show(model)
        for name, row in rows.items():
            if name not in stats.models:
                await row.remove()
        await self._placeholder(container, not stats.models, "no model is loaded (F2: Models)")

    @staticmethod
    async def _placeholder(container: Vertical, empty: bool, text: str) -> None:
        shown = container.query(".empty")
        if empty and not shown:
            await container.mount(Label(text, classes="empty"))
        elif not empty:
            await shown.remove()


def replica_devices(stats: Stats) -> list[DeviceStatistics]:
    """The devices of each Ray Serve replica (those its workers use, on its own node),
    named ``model · replica · device``; a local model has none here."""
    found: list[DeviceStatistics] = []
    for name, model in sorted(stats.models.items()):
        for replica in model.replicas:
            tag = f"{name} · {replica.raw.get('replica', '?')}"
            for device in replica.raw.get("devices") or []:
                found.append(
                    device_statistics_from({**device, "name": f"{tag} · {device.get('name')}"})
                )
    return found
