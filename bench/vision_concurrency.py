"""Vision chat under concurrency: N requests with images at once, each must answer 200.

    python -m bench.vision_concurrency --device cuda          # the GPU check (8 requests)
    python -m bench.vision_concurrency --model smolvlm-256m-instruct --device cuda

Without ``--model`` it serves a tiny random SmolVLM-style model built on the spot (no
download), which exercises the whole path: data: URLs decoded off the loop, the
processor, pixel values cast to the model's dtype on the device, streamed generation.
Prints one JSON line: statuses, latencies, and the device.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import tempfile
import time
from pathlib import Path

import httpx


def _png(color: str) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def _one(
    client: httpx.AsyncClient, model: str, color: str, stream: bool
) -> dict[str, object]:
    body = {
        "model": model,
        "max_tokens": 16,
        "temperature": 0,
        "stream": stream,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": _png(color)}},
                    {"type": "text", "text": "What colour is this picture?"},
                ],
            }
        ],
    }
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body)
    text = response.text
    if not stream and response.status_code == 200:
        text = response.json()["choices"][0]["message"]["content"]
    return {
        "status": response.status_code,
        "seconds": round(time.perf_counter() - started, 3),
        "reply": text[:80],
    }


async def main(model: str | None, device: str, concurrency: int) -> dict[str, object]:
    import localinfer

    with tempfile.TemporaryDirectory() as scratch:
        if model is None:
            from tests.fixtures.tiny_vision import build_tiny_vlm

            served: object = {"vision": build_tiny_vlm(Path(scratch) / "tiny-vlm")}
            name = "vision"
        else:
            served, name = [model], model
        async with (
            localinfer.Server(models=served, device=device) as server,  # type: ignore[arg-type]
            httpx.AsyncClient(base_url=server.url, timeout=600) as client,
        ):
            await _one(client, name, "white", False)  # warm-up
            colors = ["red", "green", "blue", "yellow"]
            started = time.perf_counter()
            results = await asyncio.gather(
                *(_one(client, name, colors[i % 4], i % 2 == 1) for i in range(concurrency))
            )
            wall = time.perf_counter() - started
    import torch

    return {
        "model": model or "tiny random SmolVLM-style (Idefics3)",
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "concurrency": concurrency,
        "all_200": all(r["status"] == 200 for r in results),
        "wall_s": round(wall, 3),
        "results": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.vision_concurrency")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.model, args.device, args.concurrency))))
