"""Catalog entries to handlers: a preferred engine, and the fallback that says so."""

from __future__ import annotations

import logging

import pytest

from localinfer.hub.catalog import CatalogEntry
from localinfer.plugins import HandlerSpec, PluginSet, discover
from localinfer.runtime.resolve import entry_handler

GGUF_CHAT = CatalogEntry(
    "gguf-chat", "o/gguf-chat", "chat", "fast-gguf", fallback_handler="transformers-chat"
)


def _plugins(*extra: HandlerSpec) -> PluginSet:
    plugins = PluginSet()
    plugins.handlers.update(discover().handlers)
    plugins.handlers.pop("fast-gguf", None)
    plugins.handlers.update({spec.name: spec for spec in extra})
    return plugins


def _fast(*requires: str) -> HandlerSpec:
    return HandlerSpec("fast-gguf", "chat", "somewhere:Fast", requires=requires)


def test_the_preferred_handler_when_it_can_run() -> None:
    assert entry_handler(GGUF_CHAT, _plugins(_fast("json"))).name == "fast-gguf"


def test_falls_back_when_the_handler_is_not_installed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="localinfer.runtime.resolve"):
        assert entry_handler(GGUF_CHAT, _plugins()).name == "transformers-chat"
    assert "'fast-gguf' is not installed; served by 'transformers-chat'" in caplog.text


def test_falls_back_when_a_required_module_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    plugins = _plugins(_fast("no_such_module_anywhere"))
    with caplog.at_level(logging.WARNING, logger="localinfer.runtime.resolve"):
        assert entry_handler(GGUF_CHAT, plugins).name == "transformers-chat"
    assert "needs no_such_module_anywhere" in caplog.text


def test_the_packaged_smollm2_prefers_llama_cpp_with_transformers_as_fallback() -> None:
    entry = discover().catalog["smollm2-135m-instruct"]
    assert (entry.handler, entry.fallback_handler) == ("llama-cpp", "transformers-chat")
    explicit = discover().catalog["smollm2-135m-instruct-transformers"]
    assert explicit.handler == "transformers-chat" and explicit.packaged == entry.packaged
