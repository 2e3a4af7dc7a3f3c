"""The HE cost curve: provider ms and result bytes per query against list size (log-log)."""
from __future__ import annotations

from pathlib import Path


def plot_cost_curve(rows: list[dict], path: str | Path) -> Path:
    """Measured points as markers and solid lines, extrapolated points hollow and dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for eng, colour in (("he-hamming", "tab:blue"), ("he-cosine", "tab:orange")):
        rs = sorted((r for r in rows if r["engine"] == eng and r["key_holder"] == "third-party"),
                    key=lambda r: r["list_size"])
        if not rs:
            continue
        meas = [r for r in rs if r["label"] == "measured"]
        extra = [meas[-1]] + [r for r in rs if r["label"] == "extrapolated"] if meas else []
        for ax, key, scale in ((ax1, "provider_ms", 1e-3), (ax2, "result_bytes", 1 / 2**20)):
            ax.plot([r["list_size"] for r in meas], [r[key] * scale for r in meas], "o-", color=colour,
                    label=f"{eng} (measured)")
            if len(extra) > 1:
                ax.plot([r["list_size"] for r in extra], [r[key] * scale for r in extra], "o--", color=colour,
                        mfc="white", markevery=list(range(1, len(extra))), label=f"{eng} (extrapolated)")
    ax1.set(xscale="log", yscale="log", xlabel="list size", ylabel="provider CPU s per query",
            title="provider cost per query")
    ax2.set(xscale="log", yscale="log", xlabel="list size", ylabel="result MiB per query",
            title="result bytes to the key holder")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("HE matching cost (synthetic lists; BFV N=16384 Hamming, CKKS N=8192 cosine)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
