"""Run the three runtime benchmarks, then rewrite the "Runtime core" block of the docs.

``python -m bench`` (or ``python -m bench.run_all``); ``--quick`` for a smoke run,
which leaves the docs alone unless ``--docs`` is given.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from bench import bridge_overhead, loop_blocking, stream_cost
from bench.common import default_pinning, log, write_results
from bench.plot import plot_noop
from bench.report import update_doc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short repeat of everything")
    parser.add_argument("--docs", action="store_true", help="update the docs after --quick too")
    args = parser.parse_args(argv)
    pinning = default_pinning()
    started = time.time()

    bridge = bridge_overhead.run(
        bridge_overhead.Options.quick() if args.quick else bridge_overhead.Options(), pinning
    )
    write_results("bridge_overhead", bridge)
    print(bridge_overhead.render(bridge), flush=True)

    loop = loop_blocking.run(
        loop_blocking.Options.quick() if args.quick else loop_blocking.Options(), pinning
    )
    write_results("loop_blocking", loop)
    print(loop_blocking.render(loop), flush=True)

    stream = stream_cost.run(
        stream_cost.Options.quick() if args.quick else stream_cost.Options(), pinning
    )
    write_results("stream_cost", stream)
    print(stream_cost.render(stream), flush=True)

    if not args.quick or args.docs:
        plot_noop()
        log(f"[bench] wrote {update_doc()}")
    log(f"[bench] all done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
