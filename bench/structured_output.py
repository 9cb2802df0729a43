"""Decode speed with ``json_schema`` enforced vs free text, same model, same run.

The grammar costs a mask per token (transformers: xgrammar fills a bitmask, applied in
place; llama.cpp: the sequence's GBNF grammar sampler, in C, first in its sampler chain);
the question is how much of the free-text speed survives. Each repeat runs both modes back
to back (order alternating) and the ratio is taken within the repeat; the median is
reported:

    python bench/structured_output.py                      # packaged SmolLM2-135M, CPU
    python bench/structured_output.py --streams 1 4 --repeats 3 --tokens 48
    python bench/structured_output.py --engine transformers  # SmolLM2 through torch
    python bench/structured_output.py --model llama-1b --device cuda --streams 32 \
        --continuous-batching                              # Llama-3.2-1B shape, random

The engine is the one the model's catalog entry names (``--engine auto``): the packaged
SmolLM2 is served by the llama.cpp plugin, which decodes ``streams`` requests in one batch
(``--threads`` llama.cpp threads, 1 by default: a shared machine's spinning barriers).
With transformers on CPU the handler serves them one after another (sequential
``generate``), with ``--continuous-batching`` they share forward passes and each batch
row gets its own mask. tok/s is completion tokens over the round's wall time; the free-text
round of a repeat gives each row exactly the tokens its schema row produced (see
:func:`_round`), so both modes do the same work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fmt, log, machine, markdown_table, write_results
from localinfer.handlers.base import ModelSource
from localinfer.handlers.generation.constraints import OutputConstraint, canonical_schema
from localinfer.handlers.tasks import GenerationRequest, GenerationResult
from localinfer.handlers.transformers_chat import TransformersChatHandler
from localinfer.plugins import discover
from localinfer.runtime.resolve import resolve
from localinfer.testing import RecordingItem

#: a schema whose documents run long (a list of records), so decode dominates
SCHEMA = {
    "type": "object",
    "properties": {
        "fruits": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "color": {"type": "string"}},
                "required": ["name", "color"],
            },
        }
    },
    "required": ["fruits"],
}
PROMPT = ({"role": "user", "content": "List twenty fruits with their colors, as JSON."},)


def _round(handler: Any, lengths: list[int], schema: bool) -> tuple[float, list[int]]:
    """One round of ``len(lengths)`` requests at once; tok/s and each row's token count.

    Row ``i`` may produce up to ``lengths[i]`` tokens. A schema round is given the full
    budget and its rows stop where their documents end (a random model often closes the
    JSON early); the free-text round of the same repeat is then given exactly those
    lengths, so both modes do the same work with the same batch shrinking as rows finish,
    and the ratio measures the mask's cost, not how long the documents happened to be.
    """
    constraint = OutputConstraint(canonical_schema(SCHEMA)) if schema else None
    items = [
        RecordingItem(
            GenerationRequest(
                messages=PROMPT,
                max_new_tokens=length,
                temperature=0.7,
                seed=None,
                constraint=constraint,
            ),
            request_id=f"r{i}",
        )
        for i, length in enumerate(lengths)
    ]
    started = time.perf_counter()
    handler.process(items)
    while not all(item.done for item in items):
        time.sleep(0.005)
    wall = time.perf_counter() - started
    for item in items:
        assert item.error is None, item.error
    produced = [
        item.result.completion_tokens if isinstance(item.result, GenerationResult) else 0
        for item in items
    ]
    return sum(produced) / wall, produced


def _constrained_answer(handler: Any, tokens: int) -> tuple[OutputConstraint, GenerationResult]:
    """One greedy ``json_schema`` answer of up to ``tokens`` tokens, and its constraint: the
    tokens the grammar costs are replayed over."""
    constraint = OutputConstraint(canonical_schema(SCHEMA))
    item = RecordingItem(
        GenerationRequest(
            messages=PROMPT, max_new_tokens=tokens, temperature=0.0, constraint=constraint
        )
    )
    handler.process([item])
    while not item.done:
        time.sleep(0.005)
    result = item.result
    assert isinstance(result, GenerationResult), item.error
    return constraint, result


def mask_cost(handler: TransformersChatHandler, tokens: int) -> dict[str, float]:
    """The grammar's own cost per token (accept + fill + apply), against one decode step.

    Robust to a busy machine in a way tokens/s is not: both are timed in this process, a
    few milliseconds apart, over the same tokens.
    """
    import torch

    constraint, result = _constrained_answer(handler, tokens)
    assert handler.tokenizer is not None
    ids = handler.tokenizer(result.text, add_special_tokens=False)["input_ids"]
    sequence = handler._grammar_cache().sequence(constraint)
    vocab = handler._grammar_cache().vocab_size
    scores = torch.zeros((1, vocab))
    started = time.perf_counter()
    for token in ids:
        sequence.mask(scores)
        sequence.accept(int(token))
    mask_ms = (time.perf_counter() - started) * 1e3 / max(1, len(ids))
    decode_ms = result.decode_ms / max(1, result.completion_tokens - 1)
    return {"mask_ms_per_token": mask_ms, "decode_ms_per_token": decode_ms}


def llamacpp_grammar_cost(handler: Any, tokens: int) -> dict[str, float]:
    """The GBNF grammar's own cost per token in llama.cpp, replayed over a constrained
    answer's tokens, against its decode step: applied to the whole vocabulary (what a
    grammar inside the chain costs, and a refused token's redraw) and checking the one
    token the chain picked (what the engine does first)."""
    import ctypes

    import numpy as np
    from localinfer_llamacpp.candidates import TOKEN_DATA
    from localinfer_llamacpp.constraints import constraint_sampler

    constraint, result = _constrained_answer(handler, tokens)
    model = handler.model
    lib = model.lib
    ids = model.tokenize(result.text, add_special=False, parse_special=False)
    costs = {}
    for name, size in (("mask_ms_per_token", model.n_vocab), ("check_ms_per_token", 1)):
        grammar = constraint_sampler(model, constraint)
        cells = np.zeros(size, dtype=TOKEN_DATA)
        array = lib.llama_token_data_array(
            data=ctypes.cast(cells.ctypes.data, ctypes.POINTER(lib.llama_token_data)),
            size=size,
            selected=-1,
            sorted=False,
        )
        every_id = np.arange(size, dtype=np.int32)
        started = time.perf_counter()
        for token in ids:
            cells["id"], cells["logit"] = every_id if size > 1 else token, 0.0
            array.size, array.selected, array.sorted = size, -1, False
            lib.llama_sampler_apply(grammar, ctypes.byref(array))
            lib.llama_sampler_accept(grammar, token)
        costs[name] = (time.perf_counter() - started) * 1e3 / max(1, len(ids))
        lib.llama_sampler_free(grammar)
    costs["decode_ms_per_token"] = result.decode_ms / max(1, result.completion_tokens - 1)
    return costs


def _engine(requested: str, model: str) -> str:
    if requested != "auto":
        return requested
    if model in ("tiny", "llama-1b"):
        return "transformers"
    return "llama-cpp" if resolve(model, discover()).handler.name == "llama-cpp" else "transformers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--continuous-batching", action="store_true")
    parser.add_argument("--engine", choices=["auto", "transformers", "llama-cpp"], default="auto")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = parser.parse_args()
    args.engine = _engine(args.engine, args.model)

    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    options: dict[str, Any] = {"continuous_batching": args.continuous_batching}
    if args.continuous_batching:
        options["max_in_flight"] = max(2, max(args.streams))
        # per-row masks need every step to run the Python processors (see batch_rows)
        options["continuous_batching_config"] = {
            "use_cuda_graph": False,
            "use_async_batching": False,
        }
    if args.model in ("tiny", "llama-1b"):
        import tempfile

        from bench.chat_handler import build_model

        location = build_model(args.model, Path(tempfile.mkdtemp()), args.device)
        source = ModelSource(str(location), options=options)
    else:
        resolved = resolve(args.model, discover())
        source = ModelSource(
            location=resolved.source.location,
            revision=resolved.source.revision,
            filename=resolved.source.filename,
            options={**resolved.source.options, **options},
        )
    handler: Any
    if args.engine == "llama-cpp":
        from localinfer_llamacpp.handler import LlamaCppChatHandler

        threads = {"n_threads": args.threads, "n_threads_batch": args.threads}
        handler = LlamaCppChatHandler(
            ModelSource(
                source.location,
                filename=source.filename,
                options={"parallel": max(4, *args.streams), **threads},
            )
        )
    else:
        handler = TransformersChatHandler(source)
    handler.load(args.device)
    _round(handler, [8], True)  # compile the grammar and warm up once
    rows, data = [], []
    for streams in args.streams:
        free_rates, schema_rates, ratios = [], [], []
        lengths: list[int] = []
        for repeat in range(args.repeats):
            budget = [args.tokens] * streams
            rates: dict[bool, float] = {}
            if repeat % 2 == 0 or not lengths:  # schema first, then free text at its lengths
                rates[True], lengths = _round(handler, budget, True)
                rates[False], _ = _round(handler, lengths, False)
            else:  # free text first, at the lengths of the last schema round
                rates[False], _ = _round(handler, lengths, False)
                rates[True], lengths = _round(handler, budget, True)
            free_rates.append(rates[False])
            schema_rates.append(rates[True])
            ratios.append(rates[True] / rates[False])
            log(
                f"streams={streams} repeat={repeat}: free {rates[False]:.1f} tok/s, "
                f"json_schema {rates[True]:.1f} tok/s"
            )
        point = {
            "streams": streams,
            "free_tok_s": statistics.median(free_rates),
            "schema_tok_s": statistics.median(schema_rates),
            "ratio": statistics.median(ratios),
        }
        data.append(point)
        rows.append(
            [
                str(streams),
                fmt(point["free_tok_s"]),
                fmt(point["schema_tok_s"]),
                fmt(point["ratio"], 3),
            ]
        )
    if args.engine == "llama-cpp":
        cost = llamacpp_grammar_cost(handler, args.tokens)
        mode = f"llama.cpp batched, {args.threads} thread(s)"
    else:
        cost = mask_cost(handler, args.tokens)
        mode = "continuous batching" if args.continuous_batching else "sequential"
    handler.close()
    load = os.getloadavg()
    print(
        f"{args.model} on {args.device} ({mode}), {args.tokens} tokens, median of "
        f"{args.repeats}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(markdown_table(["streams", "free text tok/s", "json_schema tok/s", "ratio"], rows))
    check = (
        f", checking the picked token {cost['check_ms_per_token']:.3f} ms/token"
        if "check_ms_per_token" in cost
        else ""
    )
    print(
        f"grammar cost {cost['mask_ms_per_token']:.3f} ms/token{check} vs decode step "
        f"{cost['decode_ms_per_token']:.1f} ms/token"
    )
    write_results(
        "structured_output",
        {
            "machine": machine(),
            "args": vars(args),
            "mode": mode,
            "points": data,
            "cost": cost,
            "load_average": load,
        },
    )


if __name__ == "__main__":
    main()
