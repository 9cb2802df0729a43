"""Catalog entries to handlers: a preferred engine, and a fallback only where allowed."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from localinfer.errors import CapabilityUnavailable
from localinfer.handlers.builtin import LLAMA_CPP_INSTALL
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


def test_refuses_when_the_handler_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slower engine is never picked silently: the refusal names what to install."""
    monkeypatch.delenv("LOCALINFER_ALLOW_SLOW_FALLBACK", raising=False)
    entry = replace(GGUF_CHAT, install="fast-gguf-plugin 'fastlib>=1.2'")
    with pytest.raises(CapabilityUnavailable) as refused:
        entry_handler(entry, _plugins())
    message = str(refused.value)
    assert "'fast-gguf' is not installed" in message
    assert "pip install fast-gguf-plugin 'fastlib>=1.2'" in message
    assert "--allow-slow-fallback" in message and "'transformers-chat'" in message


def test_refuses_when_a_required_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALINFER_ALLOW_SLOW_FALLBACK", raising=False)
    with pytest.raises(CapabilityUnavailable, match="needs no_such_module_anywhere"):
        entry_handler(GGUF_CHAT, _plugins(_fast("no_such_module_anywhere")))


def test_falls_back_when_the_slower_path_is_allowed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOCALINFER_ALLOW_SLOW_FALLBACK", "1")
    with caplog.at_level(logging.WARNING, logger="localinfer.slower_path"):
        assert entry_handler(GGUF_CHAT, _plugins()).name == "transformers-chat"
        plugins = _plugins(_fast("no_such_module_anywhere"))
        assert entry_handler(GGUF_CHAT, plugins).name == "transformers-chat"
    assert "'fast-gguf' is not installed; allowed by allow_slow_fallback" in caplog.text
    assert "through 'transformers-chat'" in caplog.text
    assert "needs no_such_module_anywhere" in caplog.text


def test_the_llama_cpp_install_hint_is_the_plugins_own_requirement() -> None:
    """The refusal asks for the llama-cpp-python range the plugin itself declares."""
    pyproject = Path(__file__).parents[2] / "plugins/localinfer-plugin-llamacpp/pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    requirement = next(d for d in declared if d.startswith("llama-cpp-python"))
    assert f"'{requirement}'" in LLAMA_CPP_INSTALL
    assert discover().catalog["smollm2-135m-instruct"].install == LLAMA_CPP_INSTALL


def test_the_packaged_smollm2_prefers_llama_cpp_with_transformers_as_fallback() -> None:
    entry = discover().catalog["smollm2-135m-instruct"]
    assert (entry.handler, entry.fallback_handler) == ("llama-cpp", "transformers-chat")
    explicit = discover().catalog["smollm2-135m-instruct-transformers"]
    assert explicit.handler == "transformers-chat" and explicit.packaged == entry.packaged
