"""Listing and freeing the Hugging Face cache through huggingface-hub's cache API."""

from __future__ import annotations

from pathlib import Path

import pytest

from localinfer.errors import ModelNotFound
from localinfer.hub.download import download_model, download_target
from localinfer.hub.listing import cached_models, remove_cached
from tests.fixtures.hub_server import HubServer

FILES = {"config.json": b"{}", "model.safetensors": b"w" * 50_000}


def test_an_empty_cache_lists_nothing(hf_home: Path) -> None:
    assert cached_models() == []
    with pytest.raises(ModelNotFound, match="not in the Hugging Face cache"):
        remove_cached("org/none")


def test_cached_models_are_listed_with_size_and_removed_entirely(
    hub: HubServer, hf_home: Path
) -> None:
    hub.add_repo("org/a", FILES)
    hub.add_repo("org/b", {**FILES, "extra.json": b"[1]"})
    for repo in ("org/b", "org/a"):
        download_model(download_target(repo, {}))

    listed = cached_models()
    assert [m.repo_id for m in listed] == ["org/a", "org/b"]
    a = listed[0]
    assert a.size_bytes == sum(len(data) for data in FILES.values()) and a.files == 2
    assert a.revisions[0].refs == ("main",) and (a.snapshot / "config.json").is_file()

    removal = remove_cached("org/a")
    assert removal.freed_bytes == a.size_bytes
    assert not (hf_home / "hub" / "models--org--a").exists()
    assert [m.repo_id for m in cached_models()] == ["org/b"]


def test_remove_one_revision_by_ref(hub: HubServer) -> None:
    hub.add_repo("org/a", FILES)
    download_model(download_target("org/a", {}))
    with pytest.raises(ModelNotFound, match="no cached revision 'v2'"):
        remove_cached("org/a", "v2")
    assert remove_cached("org/a", "main").revisions
    assert cached_models() == []
