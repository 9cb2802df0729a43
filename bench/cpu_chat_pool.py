"""Issue 17's targets judged over every round of several ``bench.cpu_chat`` runs.

On the shared two-core VM a single round of either server ranges over 1.5x, so the median
of one run's 16 per-round ratios moves by about 3 % from run to run: at parity, a target
of 1.0x falls on either side. Pooling the rounds of several runs (each ratio still a round
of ours against the peer's round of the same repeat, minutes apart) narrows that; runs
whose median round had other processes use more than ``FOREIGN_LIMIT`` cores are left
out, as ``bench.cpu_chat`` leaves them unjudged.

    python -m bench.cpu_chat_pool bench/results/cpu_chat-20261208T0*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.cpu_chat import FOREIGN_LIMIT, OURS, PEER, TARGETS

#: target -> (streams, the round's field)
MEASURES = {
    "tok_s_1": ("1", "tok_s"),
    "tok_s_4": ("4", "tok_s"),
    "ttft_max_4": ("4", "ttft_max_ms"),
}


def ours_in(results: dict[str, Any], options: str) -> dict[str, Any] | None:
    """localinfer's rounds: the one contender, or the one run with ``options``."""
    return results.get(f"{OURS} {options}") if options else results.get(OURS)


def round_ratios(run: dict[str, Any], options: str) -> dict[str, list[float]]:
    """Each target's per-round ratios in one run (ours / the peer's, same repeat)."""
    results = run["results"]
    ours, peer = ours_in(results, options), results.get(PEER)
    found: dict[str, list[float]] = {key: [] for key in MEASURES}
    if ours is None or peer is None:
        return found
    for key, (streams, field) in MEASURES.items():
        theirs = {r["repeat"]: r[field] for r in peer.get(streams, []) if field in r}
        found[key] = [
            r[field] / theirs[r["repeat"]]
            for r in ours.get(streams, [])
            if field in r and r["repeat"] in theirs
        ]
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/results/cpu_chat-*.json")
    parser.add_argument(
        "--options", default="", help="the --localinfer-options of the set-up to judge"
    )
    args = parser.parse_args(argv)
    pooled: dict[str, list[float]] = {key: [] for key in MEASURES}
    for path in sorted(args.runs):
        run = json.loads(path.read_text())
        foreign = statistics.median(run.get("foreign_cores") or [0.0])
        ratios = round_ratios(run, args.options)
        if foreign > FOREIGN_LIMIT or not any(ratios.values()):
            print(f"{path.name}: left out (under load, or no such contender)")
            continue
        shown = ", ".join(
            f"{key} {statistics.median(values):.2f}x" for key, values in ratios.items() if values
        )
        print(f"{path.name}: {shown}")
        for key, values in ratios.items():
            pooled[key] += values
    for key, values in pooled.items():
        if not values:
            continue
        target, most = TARGETS[key], key.startswith("ttft")
        median = statistics.median(values)
        met = median <= target if most else median >= target
        print(
            f"pooled {key}: median {median:.3f}x of {len(values)} rounds "
            f"(target {'<=' if most else '>='} {target}x: {'met' if met else 'missed'})"
        )


if __name__ == "__main__":
    main()
