"""``localinfer tui --url`` against a Ray-hosted server (the TUI's own harness): the
monitor shows a row and the devices of every replica, and the models screen's unload
answers with the reason it cannot be done there."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from localinfer.tui.app import LocalInferApp
from localinfer.tui.backend import RemoteBackend
from localinfer.tui.screens.models import ModelsScreen
from localinfer.tui.screens.monitor import MonitorScreen
from localinfer.tui.widgets.gauges import DeviceRow
from tests.ray.conftest import API_KEY, CHAT, RayServed
from tests.tui.conftest import SIZE, wait_for
from tests.tui.screen_text import screen_text

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.anyio]


#: replicas report through Ray on a shared two-core machine: slow in the full suite
RAY_WAIT_S = 90


async def test_tui_url_against_ray(ray_served: RayServed) -> None:
    # what `localinfer tui --url URL --api-key KEY` builds
    app = LocalInferApp(RemoteBackend(ray_served.url, API_KEY), poll_interval_s=0.25)
    failure: AssertionError | None = None
    async with app.run_test(size=SIZE) as pilot:
        try:
            await _monitor_and_unload(app, pilot)
        except AssertionError as exc:  # kept until the app has shut down: a failure inside
            failure = exc  # run_test once surfaced only as a bare CancelledError
    if failure is not None:
        raise failure


async def _monitor_and_unload(app: LocalInferApp, pilot: Pilot[object]) -> None:
    await pilot.press("f3")
    monitor = app.screen
    assert isinstance(monitor, MonitorScreen)
    table = monitor.query_one("#models", DataTable)

    def rows(prefix: str) -> list[str]:
        return [str(k.value) for k in table.rows if str(k.value).startswith(prefix)]

    def replica_devices() -> list[str]:
        return [r.device_name for r in monitor.query(DeviceRow) if CHAT in r.device_name]

    await wait_for(pilot, lambda: len(rows(f"{CHAT} · ")) == 2, RAY_WAIT_S, "two chat replicas")
    await wait_for(pilot, lambda: len(replica_devices()) == 2, RAY_WAIT_S, "their devices")
    assert all(name.endswith(" · cpu") for name in replica_devices())
    assert rows("where")  # the model in the ingress: a row of its own, no replicas

    await pilot.press("f2")
    models = app.screen
    assert isinstance(models, ModelsScreen)
    await wait_for(pilot, lambda: {CHAT, "sleep"} <= models.inventory.loaded, RAY_WAIT_S, "models")
    models.unload("sleep")
    await wait_for(pilot, lambda: "Ray Serve" in screen_text(app), RAY_WAIT_S, "the refusal")
    assert "unloading sleep failed" in screen_text(app)
