"""The management API on a live server: downloads with SSE progress, load, unload,
keep-alive and on-demand loading. Downloads use the real huggingface-hub client against
a local Hub; the model downloaded is a real (tiny) BERT, then loaded and served."""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette

from localinfer.hub.cache import cached_snapshot
from localinfer.hub.download import download_model, download_target
from localinfer.hub.user_catalog import user_catalog_path
from localinfer.runtime.model import ModelDefinition
from localinfer.server.app import create_app
from localinfer.server.runner import serving
from tests.fixtures.hub_server import TINY_BERT_REPO, HubRepo, HubServer
from tests.support import define, server_timing, settings, wait_until

pytestmark = pytest.mark.anyio

EMBED = {"model": TINY_BERT_REPO, "input": ["the quick brown fox"]}


@asynccontextmanager
async def app_server(
    definitions: Sequence[ModelDefinition] = (), **overrides: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A live server, and its app (to look at the registry from the test)."""
    app = create_app(definitions, settings(device="cpu", **overrides))
    async with (
        serving(app, app.state.settings) as address,
        httpx.AsyncClient(base_url=address.url, timeout=30) as client,
    ):
        with anyio.fail_after(30):
            while (await client.get("/ready")).status_code != 200:
                await anyio.sleep(0.02)
        yield app, client


async def events(client: httpx.AsyncClient, download_id: str) -> AsyncIterator[dict[str, Any]]:
    async with client.stream("GET", f"/v1/downloads/{download_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                if line == "data: [DONE]":
                    return
                yield json.loads(line[len("data: ") :])


async def pulled(repo_id: str) -> None:
    await anyio.to_thread.run_sync(lambda: download_model(download_target(repo_id, {})))


async def test_download_load_serve_unload(tiny_bert_repo: HubRepo, hub: HubServer) -> None:
    async with app_server() as (app, client):
        r = await client.post("/v1/downloads", json={"model": TINY_BERT_REPO})
        assert r.status_code == 202, r.text
        download = r.json()
        assert r.headers["location"] == f"/v1/downloads/{download['id']}"
        seen = [event async for event in events(client, download["id"])]
        assert seen[-1]["state"] == "done" and seen[-1]["progress"]["fraction"] == 1.0
        assert seen[-1]["path"] == str(cached_snapshot(TINY_BERT_REPO))
        listed = (await client.get("/v1/downloads")).json()["data"]
        assert [d["id"] for d in listed] == [download["id"]]

        r = await client.post(f"/v1/models/{TINY_BERT_REPO}/load", json={"wait": True})
        assert r.status_code == 200, r.text
        assert r.json()["loaded"] and r.json()["ready"]
        r = await client.post("/v1/embeddings", json=EMBED)
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 32
        again = await client.post(f"/v1/models/{TINY_BERT_REPO}/load")
        assert again.status_code == 200 and not again.json()["loaded"]

        refs = list(app.state.registry.get(TINY_BERT_REPO).handler_refs)
        assert len(refs) == 1 and refs[0]() is not None
        r = await client.delete(f"/v1/models/{TINY_BERT_REPO}")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["handlers"] == 1 and report["handlers_alive"] == 0
        assert report["device_memory"] == {}  # CPU: nothing on a GPU to report
        gc.collect()
        assert refs[0]() is None, "the handler (and its weights) are gone"
        assert (await client.post("/v1/embeddings", json=EMBED)).status_code == 404
        assert (await client.delete(f"/v1/models/{TINY_BERT_REPO}")).status_code == 404


async def test_progress_streams_and_a_download_is_cancellable(hub: HubServer) -> None:
    hub.add_repo("org/big", {"config.json": b"{}", "model.safetensors": os.urandom(4_000_000)})
    hub.faults.chunk_delay_s = 0.02  # about 3 MB/s
    async with app_server() as (_, client):
        r = await client.post("/v1/downloads", json={"model": "org/big"})
        download_id = r.json()["id"]
        same = await client.post("/v1/downloads", json={"model": "org/big"})
        assert same.status_code == 200 and same.json()["id"] == download_id

        states = []
        async for event in events(client, download_id):
            states.append(event["state"])
            progress = event["progress"] or {}
            if event["state"] == "running" and progress.get("done_bytes", 0) > 0:
                assert progress["total_bytes"] == 4_000_002
                started = time.perf_counter()
                assert (await client.get("/health")).status_code == 200
                assert time.perf_counter() - started < 0.5, "the loop is never blocked"
                cancel = await client.delete(f"/v1/downloads/{download_id}")
                assert cancel.status_code == 202 and cancel.json()["state"] == "cancelling"
        assert states[-1] == "cancelled" and "cancelling" in states
        assert (await client.get(f"/v1/downloads/{download_id}")).json()["state"] == "cancelled"
        assert cached_snapshot("org/big") is None


async def test_download_and_load_failures_are_reported(hub: HubServer) -> None:
    async with app_server() as (_, client):
        r = await client.post("/v1/downloads", json={"model": "org/absent"})
        assert r.status_code == 202
        final = [event async for event in events(client, r.json()["id"])][-1]
        assert final["state"] == "failed" and final["error"]["code"] == "model_not_found"

        r = await client.post("/v1/downloads", json={"model": "../../etc/passwd"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        r = await client.get("/v1/downloads/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "download_not_found"

        r = await client.post("/v1/models/%2Fetc%2Fpasswd/load")
        assert r.status_code == 400 and "not a valid model id" in r.json()["error"]["message"]
        r = await client.post("/v1/models/org/absent/load")
        assert r.status_code == 404
        assert "`localinfer pull org/absent`" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "model_not_downloaded"
        r = await client.post("/v1/models/org/absent/load", json={"workers": 0})
        assert r.status_code == 400 and r.json()["error"]["param"] == "workers"


async def test_an_offline_server_refuses_downloads(hub: HubServer) -> None:
    async with app_server(offline=True) as (_, client):
        r = await client.post("/v1/downloads", json={"model": "org/anything"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "offline"
    assert hub.requests == []


class SlowToLoad:
    """Takes 0.4 s to load, so a reload shows in the request's queue time."""

    def setup(self, device: str) -> None:
        time.sleep(0.4)

    def infer(self, x: int) -> int:
        return x


async def test_idle_models_unload_and_their_next_request_reloads_them() -> None:
    # 1 s idle: long enough that a loaded machine does not unload it before the test looks
    async with app_server([define(SlowToLoad, name="slow")], keep_alive_s=1.0) as (app, client):
        registry = app.state.registry
        r = await client.post("/v1/infer/slow", json={"args": [1]})
        assert r.status_code == 200 and r.json() == 1
        refs = list(registry.get("slow").handler_refs)

        await wait_until(lambda: "slow" not in registry, timeout=10)
        gc.collect()
        assert refs[0]() is None
        assert (await client.get("/v1/models")).json()["data"] == []

        r = await client.post("/v1/infer/slow", json={"args": [2]})
        assert r.status_code == 200 and r.json() == 2
        assert server_timing(r.headers)["queue"] >= 350, "the reload is the request's wait"
        assert "slow" in registry


async def test_a_cached_model_loads_on_demand_when_allowed(
    tiny_bert_repo: HubRepo, hub: HubServer
) -> None:
    await pulled(TINY_BERT_REPO)
    async with app_server() as (_, client):
        assert (await client.post("/v1/embeddings", json=EMBED)).status_code == 404

    async with app_server(load_on_demand=True) as (app, client):
        chat = {"model": TINY_BERT_REPO, "messages": [{"role": "user", "content": "hi"}]}
        r = await client.post("/v1/chat/completions", json=chat)
        assert r.status_code == 400 and "serves embeddings, not chat" in r.text
        assert TINY_BERT_REPO not in app.state.registry

        r = await client.post("/v1/embeddings", json=EMBED)
        assert r.status_code == 200, r.text
        assert TINY_BERT_REPO in app.state.registry

        r = await client.post("/v1/embeddings", json={**EMBED, "model": "org/absent"})
        assert r.status_code == 404
        assert "`localinfer pull org/absent`" in r.json()["error"]["message"]
        assert (
            await client.post("/v1/embeddings", json={**EMBED, "model": "gpt-4"})
        ).status_code == 404


async def test_the_catalog_says_what_is_cached_and_loaded(
    tiny_bert_repo: HubRepo, hub: HubServer
) -> None:
    user_catalog_path().write_text(
        f'[models.tiny]\nrepo = "{TINY_BERT_REPO}"\ntask = "embeddings"\n'
    )
    async with app_server(load_on_demand=True) as (_, client):

        async def entry() -> dict[str, Any]:
            data = (await client.get("/v1/catalog")).json()["data"]
            return next(e for e in data if e["id"] == "tiny")

        assert (await entry())["cached"] is False
        await pulled(TINY_BERT_REPO)
        assert (await entry())["cached"] is True and (await entry())["loaded"] is False
        r = await client.post("/v1/embeddings", json={**EMBED, "model": "tiny"})
        assert r.status_code == 200, r.text
        assert (await entry())["loaded"] is True
