"""Throughput and time to first token of TransformersChatHandler: sequential vs continuous batching.

Drives the handler the way a worker does (``process`` per request; sequential mode answers
them one after another, continuous batching keeps them all in flight) with N requests
arriving at once, and prints one table row per (mode, concurrency):

    python bench/chat_handler.py                                  # tiny random Llama, CPU
    python bench/chat_handler.py --model llama-1b --device cuda   # Llama-3.2-1B shape, random
    python bench/chat_handler.py --model /path/to/a/local/model --device cuda

``ttft`` is measured from submission to the first generated token, queueing included: it
is what a client sees. ``tok/s`` is all completion tokens over the wall time of the round;
``req tok/s`` is one request's decode speed (mean over the round).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import GenerationRequest, GenerationResult
from localinfer.handlers.transformers_chat import TransformersChatHandler

#: the shape of meta-llama/Llama-3.2-1B (1.24 B parameters), with random weights
LLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128_256,
    "max_position_embeddings": 4096,
    "rope_theta": 500_000.0,
    "tie_word_embeddings": True,
}


@dataclass
class TimedItem:
    """A WorkItem that notes when it ends (its first token is ``decode_ms`` before that)."""

    payload: GenerationRequest
    submitted: float = field(default_factory=time.perf_counter)
    finished_at: float = 0.0
    result: GenerationResult | None = None
    error: BaseException | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    cancelled: bool = False

    @property
    def request_id(self) -> str:
        return f"bench-{id(self)}"

    def emit(self, chunk: Any) -> None:
        pass

    def finish(self, result: Any = None) -> None:
        self.finished_at = time.perf_counter()
        self.done, self.result = True, result
        self.ended.set()

    def fail(self, error: BaseException) -> None:
        self.done, self.error = True, error
        self.ended.set()


def build_model(name: str, root: Path, device: str) -> Path:
    """A local model directory: the tiny test model, a random 1B Llama, or a given path."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fixtures.tiny_chat import build_tiny_llama

    if name == "tiny":
        return build_tiny_llama(root / "tiny")
    if name != "llama-1b":
        return Path(name)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny = build_tiny_llama(root / "tokenizer")
    config = LlamaConfig.from_pretrained(tiny)
    for key, value in LLAMA_1B.items():
        setattr(config, key, value)
    # the tokenizer is built here and knows ~700 tokens: a 128k-row output layer would
    # generate ids that decode to nothing, and no text would stream (about 1.0 B params)
    config.vocab_size = LlamaConfig.from_pretrained(tiny).vocab_size
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    target = root / "llama-1b"
    model.save_pretrained(target)
    for file in tiny.iterdir():  # tokenizer and generation config of the tiny model
        if not (target / file.name).exists():
            (target / file.name).write_bytes(file.read_bytes())
    del model
    return target


def one_round(
    handler: TransformersChatHandler, concurrency: int, max_new_tokens: int
) -> dict[str, float]:
    items = [
        TimedItem(
            GenerationRequest(
                messages=({"role": "user", "content": f"Request {i}: tell me about the sea."},),
                max_new_tokens=max_new_tokens,
                temperature=0.0,
            )
        )
        for i in range(concurrency)
    ]
    start = time.perf_counter()
    for item in items:
        item.submitted = start
    # as a worker feeds them: sequential mode answers each before returning, continuous
    # batching returns at once and answers from its own thread
    for item in items:
        handler.process([item])
    for item in items:
        if not item.ended.wait(600):
            raise TimeoutError("a request never ended")
    wall = time.perf_counter() - start
    failed = [item.error for item in items if item.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed: {failed[0]!r}")
    tokens = sum(item.result.completion_tokens for item in items if item.result)
    # the first token arrived decode_ms before the end (random models may stream no text)
    ttfts = [
        item.finished_at - item.result.decode_ms / 1e3 - item.submitted
        for item in items
        if item.result
    ]
    per_request = [item.result.tokens_per_second for item in items if item.result]
    return {
        "tokens": tokens,
        "wall_s": wall,
        "tok_s": tokens / wall,
        "ttft_p50_ms": statistics.median(ttfts) * 1e3,
        "ttft_max_ms": max(ttfts) * 1e3,
        "req_tok_s": statistics.mean(per_request),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, llama-1b, or a local model path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--attn", default=None, help="attn_implementation, e.g. sdpa")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--modes", default="sequential,batched")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    levels = [int(n) for n in args.concurrency.split(",")]
    rows: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = build_model(args.model, Path(tmp), args.device)
        for mode in args.modes.split(","):
            options: dict[str, Any] = {
                "continuous_batching": mode == "batched",
                "max_in_flight": max(2, *levels),
            }
            if args.dtype:
                options["dtype"] = args.dtype
            if args.attn:
                options["attn_implementation"] = args.attn
            handler = TransformersChatHandler(ModelSource(str(directory), options=options))
            handler.load(args.device)
            try:
                one_round(handler, 2, 8)  # warm-up: kernels, allocator, cache
                for level in levels:
                    rows.append((mode, level, one_round(handler, level, args.max_new_tokens)))
                    print_row(*rows[-1], header=len(rows) == 1)
            finally:
                handler.close()


def print_row(mode: str, level: int, m: dict[str, float], *, header: bool) -> None:
    if header:
        print(
            f"{'mode':<11}{'conc':>5}{'tokens':>8}{'wall s':>9}{'tok/s':>10}"
            f"{'ttft p50 ms':>13}{'ttft max ms':>13}{'req tok/s':>11}"
        )
    print(
        f"{mode:<11}{level:>5}{m['tokens']:>8.0f}{m['wall_s']:>9.2f}{m['tok_s']:>10.1f}"
        f"{m['ttft_p50_ms']:>13.1f}{m['ttft_max_ms']:>13.1f}{m['req_tok_s']:>11.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
