"""A GPU device asked of a llama-cpp-python built without GPU offload: refused, naming the
CUDA build to install, unless the operator allows the slower path; then the CPU engine is
what /health, /v1/models and /v1/stats say (the TUI shows /v1/stats' engine)."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest
from llamacpp_support import ask, run
from localinfer_llamacpp.handler import CPU_ENGINE, ENGINE, LlamaCppChatHandler

from localinfer.errors import CapabilityUnavailable
from localinfer.handlers.base import ModelSource
from localinfer.runtime import worker
from localinfer.testing import catalog_definition, serve

ALIAS = "smollm2-135m-instruct-q4"


@pytest.fixture
def without_gpu_offload(monkeypatch: pytest.MonkeyPatch) -> None:
    """This build as a CPU-only one, whatever it really is."""
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)


def _handler(gguf: Path) -> LlamaCppChatHandler:
    options = {"n_ctx": 512, "parallel": 1, "n_threads": 1}
    return LlamaCppChatHandler(ModelSource(str(gguf.parent), filename=gguf.name, options=options))


@pytest.mark.usefixtures("without_gpu_offload")
def test_a_gpu_device_without_gpu_offload_is_refused(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCALINFER_ALLOW_SLOW_FALLBACK", raising=False)
    handler = _handler(gguf)
    with pytest.raises(CapabilityUnavailable) as refused:
        handler.load("cuda:0")
    message = refused.value.message
    assert "cuda:0" in message and "without GPU offload" in message
    assert 'CMAKE_ARGS="-DGGML_CUDA=on" pip install' in message
    assert "'llama-cpp-python<0.4,>=0.3.17'" in message  # the plugin's own requirement
    assert "--allow-slow-fallback" in message
    assert handler.model is None  # refused before loading anything


@pytest.mark.usefixtures("without_gpu_offload")
def test_allowed_it_runs_on_the_cpu_and_says_so(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALINFER_ALLOW_SLOW_FALLBACK", "1")
    handler = _handler(gguf)
    handler.load("cuda:0")
    try:
        assert handler.engine == CPU_ENGINE and "CPU" in CPU_ENGINE
        assert handler.model is not None and handler.model.settings.n_gpu_layers == 0
        assert run(handler, ask("Say hi.", max_new_tokens=2))[0].error is None
    finally:
        handler.close()


@pytest.mark.usefixtures("without_gpu_offload")
def test_a_cpu_device_needs_no_gpu_offload(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALINFER_ALLOW_SLOW_FALLBACK", raising=False)
    handler = _handler(gguf)
    handler.load("cpu")
    try:
        assert handler.engine == ENGINE
    finally:
        handler.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("without_gpu_offload")
async def test_the_served_engine_is_the_cpu_one_everywhere(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALINFER_ALLOW_SLOW_FALLBACK", "1")
    # no CUDA device here: the worker thread's torch.cuda.set_device is skipped
    monkeypatch.setattr(worker, "bind_thread_to_device", lambda device: None)
    definition = catalog_definition(
        ALIAS, options={"n_ctx": 512, "parallel": 1, "n_threads": 1}, devices=("cuda:0",)
    )
    async with serve([definition], allow_slow_fallback=True) as client:
        health = (await client.get("/health")).json()
        assert health["models"][ALIAS]["engine"] == CPU_ENGINE
        assert health["models"][ALIAS]["workers"][0]["engine"] == CPU_ENGINE
        cards = (await client.get("/v1/models")).json()["data"]
        assert [c["engine"] for c in cards if c["id"] == ALIAS] == [CPU_ENGINE]
        stats = (await client.get("/v1/stats")).json()
        assert stats["models"][ALIAS]["engine"] == CPU_ENGINE
