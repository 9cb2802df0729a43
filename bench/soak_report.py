"""The soak's verdict: the checks, the docs block and the plot, from one run's results."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.common import fmt, log, markdown_table, percentile

#: the pass criteria (issue 21, item 5)
HEALTH_P99_LIMIT_MS = 20.0
#: RSS after warm-up may grow by at most this much per minute (linear fit) ...
RSS_SLOPE_LIMIT_MIB_PER_MIN = 1.0
#: ... judged only over this much time at least: shorter, the fit is all noise
RSS_JUDGED_AFTER_S = 300.0
#: how long the server gets, after the load stopped, to have nothing in flight
SETTLE_S = 30.0
#: what each kind of request ended as (the table's columns)
COLUMNS = ("sent", "ok", "refused", "hung up early", "hung up mid-stream", "5xx", "failed", "lost")


def warmup_s(duration: float) -> float:
    """Models and allocators settle first: the RSS fit starts after this."""
    return min(300.0, 0.2 * duration)


def _floor_slope(after: list[list[Any]]) -> float | None:
    """MiB/min of each minute's lowest RSS: the in-flight work (audio, batches, bodies)
    swings the 1 Hz samples by tens of MiB, a leak lifts the floor (information, not a
    check)."""
    lowest: dict[int, tuple[float, float]] = {}
    for t, rss, *_ in after:
        minute = int((t - after[0][0]) // 60)
        if minute not in lowest or rss < lowest[minute][1]:
            lowest[minute] = (t, rss)
    whole = [lowest[k] for k in sorted(lowest)][:-1]  # the last minute may be cut short
    return _slope(whole)


def _slope(samples: list[tuple[float, float]]) -> float | None:
    """MiB/min of a linear fit to (t, bytes) samples; None under three samples."""
    if len(samples) < 3:
        return None
    fit = statistics.linear_regression([t for t, _ in samples], [b / 2**20 for _, b in samples])
    return fit.slope * 60


def _less_caches(memory: list[list[Any]], caches: list[list[Any]]) -> list[tuple[float, float]]:
    """RSS minus what the handlers' bounded caches held at the time (their last reading
    before each sample; nothing before the first)."""
    out: list[tuple[float, float]] = []
    held, i = 0, 0
    for t, rss, *_ in memory:
        while i < len(caches) and caches[i][0] <= t:
            held = caches[i][1]
            i += 1
        out.append((t, rss - held))
    return out


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """Per-kind counts, RSS slope, health latency, and each check (None: not judged)."""
    duration = run["duration_s"]
    warmup = warmup_s(duration)
    memory = [m for m in run["probe"]["memory"] if m[0] >= 0]
    after = [m for m in memory if m[0] >= warmup]
    slope = _slope([(m[0], m[1]) for m in after])
    caches = run["probe"].get("caches", [])
    slope_less_caches = _slope(_less_caches(after, caches))
    at_warmup = [c[1] for c in caches if c[0] <= warmup]
    window = (after[-1][0] - after[0][0]) if after else 0.0
    floor = _floor_slope(after)
    health = [h for h in run["probe"]["health"] if h[0] >= 0]
    health_ms = [h[1] for h in health]
    # until the answer reached the probe's network stack (older runs did not record it)
    arrived_ms = [h[4] for h in health if len(h) > 4 and h[2] == 200]
    health_errors = [h for h in health if h[2] != 200]
    per_minute = _per_minute_p99(health)

    per_kind: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys(COLUMNS, 0)
    for kind, t in run["tallies"].items():
        fivexx = sum(n for s, n in t["bad_statuses"].items() if int(s) >= 500)
        fivexx += t["error_events"]
        row = {
            "sent": sum(t["statuses"].values())
            + t["hung_up_early"]
            + t["hung_up_mid_stream"]
            + t["lost"],
            "ok": len(t["ok_ms"]),
            "refused": t["refused"],
            "hung up early": t["hung_up_early"],
            "hung up mid-stream": t["hung_up_mid_stream"],
            "5xx": fivexx,
            "failed": sum(t["bad_statuses"].values()) + t["error_events"] - fivexx + t["bad_body"],
            "lost": t["lost"],
        }
        for key in totals:
            totals[key] += row[key]
        per_kind[kind] = row | {
            "p50_ms": percentile(t["ok_ms"], 50),
            "p99_ms": percentile(t["ok_ms"], 99),
            "examples": t["examples"],
        }
    server = run["server_stats"]
    checks: dict[str, bool | None] = {
        "no 5xx (nor a stream ending in an error event)": totals["5xx"] == 0,
        "no lost request (every one answered, or refused with 429/503 + Retry-After)": (
            totals["lost"] == 0 and totals["failed"] == 0
        ),
        "every kind of request was served": all(k["ok"] > 0 for k in per_kind.values()),
        "the load was past capacity (some requests refused)": totals["refused"] > 0,
        "the server counted no failed request": bool(server)
        and sum(s["failed"] for s in server.values()) == 0,
        f"nothing left in flight {SETTLE_S:.0f} s after the load": run["settled"],
        "/health says ok at the end (no hung, dead or failed worker)": run["health_at_end"] == "ok",
        f"/health p99 under {HEALTH_P99_LIMIT_MS:g} ms, every probe answered": (
            bool(health_ms)
            and (percentile(health_ms, 99) or 0) < HEALTH_P99_LIMIT_MS
            and not health_errors
        ),
        f"RSS flat after warm-up (slope under {RSS_SLOPE_LIMIT_MIB_PER_MIN:g} MiB/min)": (
            None
            if slope is None or window < RSS_JUDGED_AFTER_S
            else slope < RSS_SLOPE_LIMIT_MIB_PER_MIN
        ),
        # a bounded cache filling (the llama.cpp prompt cache, in /v1/stats) is not a leak
        f"RSS less the handlers' bounded caches flat after warm-up (slope under "
        f"{RSS_SLOPE_LIMIT_MIB_PER_MIN:g} MiB/min)": (
            None
            if slope_less_caches is None or not caches or window < RSS_JUDGED_AFTER_S
            else slope_less_caches < RSS_SLOPE_LIMIT_MIB_PER_MIN
        ),
    }
    return {
        "warmup_s": warmup,
        "rss_fit_window_s": round(window, 1),
        "rss_slope_mib_per_min": None if slope is None else round(slope, 3),
        "rss_less_caches_slope_mib_per_min": (
            None if slope_less_caches is None else round(slope_less_caches, 3)
        ),
        "caches_mib": (
            [round((at_warmup[-1] if at_warmup else 0) / 2**20, 1), round(caches[-1][1] / 2**20, 1)]
            if caches
            else None
        ),
        "rss_floor_slope_mib_per_min": None if floor is None else round(floor, 3),
        "rss_at_warmup_mib": round(after[0][1] / 2**20, 1) if after else None,
        "rss_end_mib": round(memory[-1][1] / 2**20, 1) if memory else None,
        "rss_range_after_warmup_mib": [
            round(min(m[1] for m in after) / 2**20, 1),
            round(max(m[1] for m in after) / 2**20, 1),
        ]
        if after
        else None,
        "threads_after_warmup": [min(m[2] for m in after), max(m[2] for m in after)]
        if after
        else None,
        "health": {
            "probes": len(health_ms),
            "errors": len(health_errors),
            "p50_ms": percentile(health_ms, 50),
            "p99_ms": percentile(health_ms, 99),
            "max_ms": max(health_ms) if health_ms else None,
            "worst_minute_p99_ms": max(per_minute) if per_minute else None,
            "arrived_p50_ms": percentile(arrived_ms, 50),
            "arrived_p99_ms": percentile(arrived_ms, 99),
            "arrived_max_ms": max(arrived_ms) if arrived_ms else None,
        },
        "per_kind": per_kind,
        "totals": totals,
        "checks": checks,
        "passed": all(ok is not False for ok in checks.values()),
    }


def _arrival(h: dict[str, Any]) -> str:
    """The same probes timed until the answer reached the probe's network stack."""
    if h.get("arrived_p99_ms") is None:
        return ""
    return (
        f"; until the answer arrived (the kernel's receive time, before the probe's own wait "
        f"for a core): p50 {fmt(h['arrived_p50_ms'], 2)} ms, p99 "
        f"{fmt(h['arrived_p99_ms'], 2)} ms, max {fmt(h['arrived_max_ms'], 2)} ms"
    )


def _per_minute_p99(health: list[list[Any]]) -> list[float]:
    minutes: dict[int, list[float]] = {}
    for h in health:
        minutes.setdefault(int(h[0] // 60), []).append(h[1])
    return [p for ms in minutes.values() if (p := percentile(ms, 99)) is not None]


def render(result: dict[str, Any], begin: str, end: str, image: str | None) -> str:
    """The generated block of ``docs/reliability.md`` (also what the script prints)."""
    a, m, run = result["analysis"], result["machine"], result["run"]
    rows = [
        [kind, *(f"{k[c]:,}" for c in COLUMNS), fmt(k["p50_ms"]), fmt(k["p99_ms"])]
        for kind, k in a["per_kind"].items()
    ]
    rows.append(["**all**", *(f"{a['totals'][c]:,}" for c in COLUMNS), "", ""])
    table = markdown_table(
        [
            "request",
            "sent",
            "200",
            "refused (429/503)",
            "hung up before the answer",
            "hung up mid-stream",
            "5xx",
            "failed",
            "lost",
            "p50 ms",
            "p99 ms",
        ],
        rows,
    )
    h = a["health"]
    slope = a["rss_slope_mib_per_min"]
    checks = "\n".join(
        f"- {'pass' if ok else 'not judged (run too short)' if ok is None else '**FAIL**'}: {name}"
        for name, ok in a["checks"].items()
    )
    clients = ", ".join(f"{name} {n}" for name, n in run["clients"].items())
    counters = "; ".join(
        f"{name} {s['succeeded']:,} ok / {s['rejected']:,} rejected / {s['failed']} failed / "
        f"{s['cancelled']:,} cancelled ({s['dropped']:,} of them while queued)"
        for name, s in run["server_stats"].items()
    )
    lines = [
        begin,
        "",
        f"Command: `{result['command']}` — {run['elapsed_s']:.0f} s of load, finished "
        f"{result['finished']} on {m['cpu']} ({m['cpus']} CPUs; load average "
        f"{result['load_average'][1]:.1f} over the last 5 min), Python {m['python']}, tree "
        f"`{m['git']}`. Models: {', '.join(run['models'].values())} (the default "
        f"`localinfer serve` set), `--max-queue {run['max_queue']}`"
        + (
            f", `--isolate {run['isolate']}`"
            + (
                f" `--isolated-priority {run['isolated_priority']}`"
                if run.get("isolated_priority")
                else ""
            )
            + " (RSS, threads and files: the server's and its model processes' together)."
            if run.get("isolate")
            else "."
        ),
        "",
        f"Closed-loop clients per model, 2 x (queue + what its workers hold): {clients}; "
        f"each hangs up on {run['disconnect'] * 100:.0f} % of its requests (a stream "
        "mid-way, or any request before its answer), from one process at nice "
        f"{run.get('client_nice', 0)} (the server's loop at 0, its model "
        + (
            "processes at Linux's idle priority). "
            if run.get("isolated_priority") == "idle"
            else "threads at 10). "
        )
        + "Latencies: the 200s, client-side, whole response.",
        "",
        table,
        "",
        f"Server RSS: {a['rss_at_warmup_mib']} MiB after the {a['warmup_s']:.0f} s warm-up, "
        f"{a['rss_end_mib']} MiB at the end; linear fit over the {a['rss_fit_window_s']:.0f} s "
        f"after warm-up: **{'n/a' if slope is None else f'{slope:+.2f}'} MiB/min** (samples "
        f"{a['rss_range_after_warmup_mib']} MiB); each minute's lowest RSS: "
        f"{_signed(a.get('rss_floor_slope_mib_per_min'))} MiB/min; threads "
        f"{a['threads_after_warmup']}. The handlers' bounded caches (`/v1/stats` `caches`: "
        f"the llama.cpp prompt cache) held {_cache_range(a.get('caches_mib'))}; RSS less "
        f"them: **{_signed(a.get('rss_less_caches_slope_mib_per_min'))} MiB/min**.",
        "",
        f"`/health` probed at 5 Hz from a process of its own: {h['probes']:,} probes, "
        f"{h['errors']} not 200; p50 {fmt(h['p50_ms'], 2)} ms, **p99 {fmt(h['p99_ms'], 2)} "
        f"ms**, worst one-minute p99 {fmt(h['worst_minute_p99_ms'], 2)} ms, max "
        f"{fmt(h['max_ms'], 2)} ms{_arrival(h)}.",
        "",
        f"Server counters: {counters}. A client that hangs up before the server has read its "
        "request leaves no trace there.",
        "",
        checks,
        "",
    ]
    if image:
        lines += [f"![soak: RSS, /health latency and request rate over time]({image})", ""]
    return "\n".join([*lines, end])


def _cache_range(mib: list[float] | None) -> str:
    return "n/a" if mib is None else f"{mib[0]} MiB at warm-up and {mib[1]} MiB at the end"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def plot(result: dict[str, Any], out: Path) -> Path | None:
    """RSS, /health latency and answered requests per second over the run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("[soak] matplotlib not installed: no plot")
        return None
    run, a = result["run"], result["analysis"]
    memory, health = run["probe"]["memory"], run["probe"]["health"]
    fig, (rss, lat, rate) = plt.subplots(3, 1, figsize=(8, 7), dpi=110, sharex=True)
    rss.plot([m[0] for m in memory], [m[1] / 2**20 for m in memory], lw=1)
    rss.axvline(a["warmup_s"], color="grey", ls=":", lw=1)
    rss.set_ylabel("server RSS (MiB)")
    slope = a["rss_slope_mib_per_min"]
    rss.set_title(
        f"RSS slope after warm-up {'n/a' if slope is None else f'{slope:+.2f}'} MiB/min; "
        f"/health p99 {fmt(a['health']['p99_ms'], 2)} ms",
        fontsize=9,
    )
    lat.plot([h[0] for h in health], [h[1] for h in health], ".", ms=2)
    lat.axhline(HEALTH_P99_LIMIT_MS, color="red", ls="--", lw=1, label="20 ms")
    lat.set_yscale("log")
    lat.set_ylabel("/health (ms)")
    lat.legend(frameon=False, loc="upper right")
    for what, per_s in sorted(run["rate_per_s"].items()):
        rate.plot(range(len(per_s)), per_s, lw=1, label=what)
    rate.set_ylabel("requests/s")
    rate.set_xlabel("seconds since the load began")
    rate.legend(frameon=False, ncols=len(run["rate_per_s"]) or 1, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
