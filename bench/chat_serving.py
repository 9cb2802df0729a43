"""Chat serving: output tokens/s and time to first token at 1, 8 and 32 concurrent streams.

Three contenders on the same model directory, in the same run:

- ``sequential``: in-process ``model.generate`` answering the requests one after another
  (what a server without batching does at best);
- ``localinfer``: ``localinfer serve --models DIR`` in a subprocess, driven over HTTP with
  streaming chat completions (continuous batching where the handler enables it);
- ``transformers-serve``: ``transformers serve DIR --continuous-batching`` in a subprocess,
  same client, where it can be started.

    python -m bench.chat_serving --model tiny --device cpu           # smoke run here
    python -m bench.chat_serving --model llama-1b --device cuda:0    # the GPU numbers

``ttft`` is measured by the client from sending the request to the first streamed text;
``tok/s`` is all completion tokens of the round over its wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chat_handler import build_model
from bench.common import free_port, wait_ready
from bench.common import stop_server as stop

PROMPT = "Tell me everything you know about the sea, its tides and its fish."


def start(
    command: list[str], url: str, ready_path: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    try:
        wait_ready(url, process, ready_path, timeout_s=600, interval_s=0.5)
    except BaseException:
        stop(process)
        raise
    return process


async def one_stream(
    client: httpx.AsyncClient, model: str, max_tokens: int, index: int
) -> tuple[float, int]:
    """(time to first text in s, completion tokens) of one streamed chat completion."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"{index}: {PROMPT}"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            for choice in chunk.get("choices") or []:
                if first is None and (choice.get("delta") or {}).get("content"):
                    first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), tokens


async def http_round(url: str, model: str, streams: int, max_tokens: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await one_stream(client, model, 4, -1)  # warm-up
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, model, max_tokens, i) for i in range(streams))
        )
        wall = time.perf_counter() - started
    ttfts = [r[0] for r in results]
    tokens = sum(r[1] for r in results)
    return {
        "tok_s": tokens / wall,
        "ttft_p50_ms": statistics.median(ttfts) * 1e3,
        "ttft_max_ms": max(ttfts) * 1e3,
        "tokens": tokens,
        "wall_s": wall,
    }


def sequential_round(
    model_dir: Path, device: str, streams: int, max_tokens: int, loaded: dict[str, Any]
) -> dict[str, float]:
    """In-process ``generate``, one request after another (TTFT includes the queue)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device.startswith("cuda"):  # as the handler does: cuDNN attention re-plans per length
        torch.backends.cuda.enable_cudnn_sdp(False)
    if "model" not in loaded:
        loaded["tokenizer"] = AutoTokenizer.from_pretrained(model_dir)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        loaded["model"] = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    tokenizer, model = loaded["tokenizer"], loaded["model"]
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):  # type: ignore[misc]
        """Notes when generate hands over its first new token (the first put is the prompt)."""

        def __init__(self) -> None:
            self.puts = 0
            self.at: float | None = None

        def put(self, value: Any) -> None:
            self.puts += 1
            if self.puts == 2:
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    def prompt(i: int) -> Any:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{i}: {PROMPT}"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"].to(device)

    with torch.inference_mode():
        model.generate(prompt(-1), max_new_tokens=4, do_sample=False)  # warm-up
    started = time.perf_counter()
    ttfts, tokens = [], 0
    for i in range(streams):
        ids = prompt(i)
        streamer = FirstToken()
        with torch.inference_mode():
            out = model.generate(
                ids,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                streamer=streamer,
            )
        ttfts.append((streamer.at or time.perf_counter()) - started)  # queued behind others
        tokens += out.shape[-1] - ids.shape[-1]
    wall = time.perf_counter() - started
    return {
        "tok_s": tokens / wall,
        "ttft_p50_ms": statistics.median(ttfts) * 1e3,
        "ttft_max_ms": max(ttfts) * 1e3,
        "tokens": tokens,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, llama-1b, or a model directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--streams", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--only", default="sequential,localinfer,transformers-serve")
    parser.add_argument("--out", type=Path, default=Path("bench/results/chat_serving.json"))
    args = parser.parse_args()
    levels = [int(x) for x in args.streams.split(",")]
    contenders = args.only.split(",")
    root = Path(tempfile.mkdtemp(prefix="chat-serving-"))
    model_dir = build_model(args.model, root, args.device)
    results: dict[str, dict[int, dict[str, float]]] = {}

    if "sequential" in contenders:
        loaded: dict[str, Any] = {}
        results["sequential"] = {
            n: sequential_round(model_dir, args.device, n, args.max_tokens, loaded) for n in levels
        }
        del loaded

    servers = {
        "localinfer": (
            [
                sys.executable,
                "-m",
                "localinfer",
                "serve",
                "--models",
                str(model_dir),
                "--device",
                args.device,
                "--log-level",
                "warning",
            ],
            "/ready",
        ),
        "transformers-serve": (
            [
                "transformers",
                "serve",
                str(model_dir),
                "--continuous-batching",
                "--device",
                args.device,
            ],
            "/health",
        ),
    }
    for name, (command, ready) in servers.items():
        if name not in contenders:
            continue
        if name == "transformers-serve" and shutil.which("transformers") is None:
            print("transformers CLI not found; skipping", file=sys.stderr)
            continue
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = args.out.parent / f"chat_serving-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            process = start([*command, "--port", str(port)], url, ready, log)
        except Exception as exc:  # report and go on: the other contenders still count
            print(f"{name} did not start: {exc} (see {log})", file=sys.stderr)
            continue
        try:
            served = model_dir.name if name == "localinfer" else str(model_dir)
            results[name] = {
                n: asyncio.run(http_round(url, served, n, args.max_tokens)) for n in levels
            }
        except Exception as exc:
            print(f"{name} failed: {exc!r} (see {log})", file=sys.stderr)
        finally:
            stop(process)

    base = results.get("sequential", {})
    print(f"\nmodel={args.model} device={args.device} max_tokens={args.max_tokens}")
    print(
        f"{'server':<20}{'streams':>8}{'tok/s':>10}{'ttft p50 ms':>13}{'ttft max ms':>13}"
        f"{'vs seq':>8}"
    )
    for name, rows in results.items():
        for n, m in rows.items():
            ratio = m["tok_s"] / base[n]["tok_s"] if n in base else float("nan")
            print(
                f"{name:<20}{n:>8}{m['tok_s']:>10.1f}{m['ttft_p50_ms']:>13.1f}"
                f"{m['ttft_max_ms']:>13.1f}{ratio:>8.2f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": args.model,
                "device": args.device,
                "max_tokens": args.max_tokens,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
