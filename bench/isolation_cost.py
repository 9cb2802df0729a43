"""What serving models from processes of their own (``--isolate '*'``) costs in throughput.

Two ``localinfer serve`` servers with the same packaged models (SmolLM2 chat on llama.cpp,
all-MiniLM embeddings), one with ``--isolate '*'``, both up for the whole run and loaded in
alternating rounds, so that the machine's drift falls on both. Per round: four chat streams
of 128 tokens (tokens/s), then eight concurrent embedding requests of 32 texts, four times
over (texts/s). Reported: each server's median and the median of the per-round ratios.

    python -m bench.isolation_cost --rounds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import httpx

from bench.common import ROOT, free_port, log, machine, serve_command, served, write_results

CHAT, EMBED = "smollm2-135m-instruct", "all-minilm"
STREAMS, TOKENS = 4, 128
EMBED_CLIENTS, EMBED_TEXTS, EMBED_REPEATS = 8, 32, 4


async def chat_stream(client: httpx.AsyncClient, seed: int) -> int:
    body = {
        "model": CHAT,
        "max_tokens": TOKENS,
        "temperature": 0.8,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"Story {seed}: a lighthouse keeper's week."}],
    }
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line.removeprefix("data: ")).get("usage")
                if usage:
                    tokens = int(usage["completion_tokens"])
    return tokens


async def embed(client: httpx.AsyncClient, seed: int) -> int:
    texts = [f"text {seed}-{n}: the keeper climbs the stairs at dusk" for n in range(EMBED_TEXTS)]
    for _ in range(EMBED_REPEATS):
        response = await client.post("/v1/embeddings", json={"model": EMBED, "input": texts})
        response.raise_for_status()
        texts = [text + "." for text in texts]  # not the embedding cache's
    return EMBED_TEXTS * EMBED_REPEATS


async def one_round(url: str, number: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        tokens = await asyncio.gather(
            *(chat_stream(client, number * 100 + i) for i in range(STREAMS))
        )
        chat_s = time.perf_counter() - started
        started = time.perf_counter()
        texts = await asyncio.gather(
            *(embed(client, number * 100 + i) for i in range(EMBED_CLIENTS))
        )
        embed_s = time.perf_counter() - started
    return {"chat_tok_s": sum(tokens) / chat_s, "embed_texts_s": sum(texts) / embed_s}


def command(port: int, *extra: str) -> list[str]:
    return serve_command(port, "--device", "cpu", "--models", f"{CHAT},{EMBED}", *extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation_cost")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    ports = {"in process": free_port(), "isolated": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    with (
        served(command(ports["in process"]), urls["in process"], cwd=ROOT),
        served(command(ports["isolated"], "--isolate", "*"), urls["isolated"], cwd=ROOT),
    ):
        for url in urls.values():  # warm-up, not counted
            asyncio.run(one_round(url, 999))
        for number in range(args.rounds):
            order = list(ports) if number % 2 == 0 else list(reversed(ports))
            for name in order:
                rounds[name].append(asyncio.run(one_round(urls[name], number)))
                log(f"[isolation] round {number} {name}: {rounds[name][-1]}")
    summary: dict[str, Any] = {}
    for metric in ("chat_tok_s", "embed_texts_s"):
        here = [r[metric] for r in rounds["in process"]]
        apart = [r[metric] for r in rounds["isolated"]]
        summary[metric] = {
            "in process": statistics.median(here),
            "isolated": statistics.median(apart),
            "ratio": statistics.median(a / h for a, h in zip(apart, here, strict=True)),
        }
        print(
            f"{metric}: in process {summary[metric]['in process']:.1f}, isolated "
            f"{summary[metric]['isolated']:.1f}, isolated / in process (median of per-round "
            f"ratios) {summary[metric]['ratio']:.3f}"
        )
    path = write_results(
        "isolation_cost",
        {"machine": machine(), "rounds": rounds, "summary": summary, "argv": argv or sys.argv[1:]},
    )
    log(f"[isolation] results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
