"""Optional bar chart of the no-op runs for the docs (skipped without matplotlib)."""

from __future__ import annotations

from pathlib import Path

from bench.common import ROOT, log, read_latest

OUT = ROOT / "docs" / "img" / "runtime-core-noop.png"


def plot_noop(out: Path = OUT) -> Path | None:
    """Requests/s per server per client count, from the latest bridge results."""
    results = read_latest("bridge_overhead")
    if results is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("[plot] matplotlib not installed: no plot")
        return None
    rows = results["summary"]["noop"]
    servers = list(dict.fromkeys(r["server"] for r in rows))
    clients = list(dict.fromkeys(r["clients"] for r in rows))
    width = 0.8 / len(servers)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    for i, server in enumerate(servers):
        values = [next((r["rps"] for r in rows if r["server"] == server and r["clients"] == c),
                       0.0) for c in clients]  # fmt: skip
        positions = [k + (i - (len(servers) - 1) / 2) * width for k in range(len(clients))]
        ax.bar(positions, values, width, label=server)
    ax.set_xticks(range(len(clients)), [f"{c} clients" for c in clients])
    ax.set_ylabel("requests/s (median)")
    ax.set_title("No-op model, one server core")
    ax.legend(frameon=False, ncols=len(servers), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    log(f"[plot] wrote {plot_noop()}")
