"""What counts as cached: complete snapshots, including other tools' downloads."""

from __future__ import annotations

from pathlib import Path

from localinfer.hub.cache import cached_snapshot
from localinfer.hub.dirs import hf_cache_dir
from tests.fixtures.hub_server import HubServer

FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"w" * 1000}


def test_hf_home_is_read_at_call_time(hf_home: Path) -> None:
    assert hf_cache_dir() == hf_home / "hub"


def test_a_model_fetched_by_another_tool_is_reused(hub: HubServer) -> None:
    from huggingface_hub import hf_hub_download

    hub.add_repo("org/other", FILES)
    assert cached_snapshot("org/other") is None
    # what transformers' from_pretrained does: one file at a time, no recorded file list
    for name in FILES:
        path = Path(hf_hub_download("org/other", name, cache_dir=hf_cache_dir(), endpoint=hub.url))
    assert cached_snapshot("org/other") == path.parent


def test_a_config_only_snapshot_is_not_a_model(hub: HubServer) -> None:
    from huggingface_hub import hf_hub_download

    hub.add_repo("org/other", FILES)
    hf_hub_download("org/other", "config.json", cache_dir=hf_cache_dir(), endpoint=hub.url)
    assert cached_snapshot("org/other") is None
