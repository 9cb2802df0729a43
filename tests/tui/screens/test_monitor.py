"""The monitor screen polling a live server's ``/v1/stats``: the server machine's devices,
each model's counters, their sparklines moving."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Label

from localinfer.client import Client
from localinfer.tui.screens.monitor import MonitorScreen
from localinfer.tui.widgets.gauges import DeviceRow, ThroughputRow
from tests.tui.conftest import SIZE, app_for, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def test_devices_and_models_refresh_about_once_a_poll(chat_client: Client) -> None:
    app = app_for(chat_client, poll_interval_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_for(pilot, lambda: screen.samples >= 3, what="three polls")
        text = screen_text(app)
        assert "cpu" in text and "cores" in text and "(psutil)" in text  # the server's CPU
        assert next(row.device_name for row in screen.query(DeviceRow)) == "cpu"
        table = screen.query_one("#models", DataTable)
        assert table.row_count == 2  # slow-chat, tiny-chat
        engine = (await chat_client.stats())["tiny-chat"].engine  # what /health says too
        assert engine and str(table.get_row("tiny-chat")[-1]) == engine
        assert sorted(row.model_name for row in screen.query(ThroughputRow)) == [
            "slow-chat",
            "tiny-chat",
        ]

        done = (await chat_client.stats())["slow-chat"].succeeded
        await chat_client.chat("hi", model="slow-chat", max_tokens=3)
        await wait_for(
            pilot,
            lambda: str(table.get_row("slow-chat")[-2]).startswith(f"{done + 1}/"),
            what="the request counted",
        )
        row = next(r for r in screen.query(ThroughputRow) if r.model_name == "slow-chat")
        assert max(row.requests.values) > 0  # the sparkline's series moved

        # hidden, it stops polling; shown again, it resumes
        await pilot.press("f2")
        seen = screen.samples
        await pilot.pause(0.4)
        assert screen.samples <= seen + 1
        await pilot.press("f3")
        await wait_for(pilot, lambda: screen.samples >= seen + 2, what="polling again")


async def test_a_model_on_ray_serve_shows_a_row_per_replica(chat_client: Client) -> None:
    from localinfer.client.results import Stats, statistics_from

    replica = {"queue_depth": 2, "in_flight": 3, "requests_per_second": 4.0, "succeeded": 5}
    gpu = {"name": "cuda:0", "kind": "cuda", "memory_used_bytes": 3 << 30}
    raw = {
        "task": "chat",
        "succeeded": 9,
        "replicas": [
            {**replica, "replica": "a1", "devices": [gpu]},
            {**replica, "replica": "b2", "devices": [{**gpu, "memory_used_bytes": 5 << 30}]},
        ],
    }
    app = app_for(chat_client, poll_interval_s=60)  # one poll, then the sample below
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_for(pilot, lambda: screen.samples >= 1, what="the first poll")
        await screen.show(Stats(models={"llm": statistics_from(raw)}))
        await pilot.pause()
        table = screen.query_one("#models", DataTable)
        assert table.row_count == 3
        row = table.get_row("llm · b2")
        assert (str(row[1]), str(row[2]), str(row[3])) == ("replica", "2", "3")
        assert str(row[-2]).startswith("5/")
        # each replica's device, on its own row, with its own memory
        rows = {row.device_name: row for row in screen.query(DeviceRow)}
        assert {"llm · a1 · cuda:0", "llm · b2 · cuda:0"} <= rows.keys()
        assert str(rows["llm · b2 · cuda:0"].query_one("#mem", Label).render()) == "5.4 GB"
