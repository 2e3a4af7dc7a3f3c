"""The report's figures, drawn only from stored measurements (each point is a stored row).

recall vs FPR per scheme, cost vs list size, privacy vs effectiveness, per-transform recall.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from e2eebench.evaluation.assess.assessment import Assessment

CATEGORY_COLOURS = {"baseline (no E2EE)": "#555555", "device-related": "#1f77b4",
                    "server-related": "#9467bd", "encryption-related": "#d62728"}
COST_METRICS = (("client_ms", "device CPU per image (ms)"), ("server_ms", "server CPU per image (ms)"),
                ("device_storage_bytes", "device bundle (bytes)"), ("setup_s", "server-side setup (s)"))


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _params(p) -> dict:
    return json.loads(p) if isinstance(p, str) and p else {}


def overall(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = df[df.metric == metric]
    return d[d["params"].map(lambda p: _params(p).get("slice", "all") == "all")]


def _category(a: Assessment, scheme: str) -> str:
    r = a.table[a.table.scheme == scheme]
    return str(r.iloc[0]["eu_category"]) if len(r) else ""


def _yerr(d: pd.DataFrame) -> np.ndarray:
    lo = (d["value"] - d["ci_low"].fillna(d["value"])).clip(lower=0)
    hi = (d["ci_high"].fillna(d["value"]) - d["value"]).clip(lower=0)
    return np.vstack([lo.to_numpy(float), hi.to_numpy(float)])


def _legend_categories(ax, cats: set[str]) -> None:
    from matplotlib.lines import Line2D
    hs = [Line2D([], [], marker="o", ls="", color=CATEGORY_COLOURS.get(c, "k"), label=c) for c in sorted(cats)]
    if hs:
        ax.legend(handles=hs, title="EU category", fontsize=8, title_fontsize=8, loc="best")


def _label_groups(fig, ax, points: list[tuple[str, float, float]]) -> None:
    """Number each distinct point; list the schemes behind each number beside the axes.

    Several schemes often land on the same point (same recall, same FPR); one number per
    point and a key keeps every name readable.
    """
    groups: dict[tuple[float, float], list[str]] = {}
    for name, x, y in points:
        groups.setdefault((round(float(x), 12), round(float(y), 12)), []).append(name)
    key = []
    for k, ((x, y), names) in enumerate(sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0])), start=1):
        ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9, fontweight="bold")
        key.append(f"{k}: " + ", ".join(names))
    fig.text(0.70, 0.88, "\n".join(key), fontsize=8, va="top", ha="left", family="monospace", wrap=True)


def _recall_scatter(a: Assessment, plt, schemes: list[str], rec: pd.DataFrame, x: pd.DataFrame, *,
                    xerr: bool, label):
    """Recall (with its interval) against one x metric, a point per scheme coloured by EU category."""
    fig, ax = plt.subplots(figsize=(11, 5.5))
    fig.subplots_adjust(left=0.08, right=0.68, bottom=0.11, top=0.9)
    cats, pts = set(), []
    for s in schemes:
        r, xs = rec.loc[[s]], x.loc[[s]]
        cat = _category(a, s)
        cats.add(cat)
        ax.errorbar(xs["value"], r["value"], xerr=_yerr(xs) if xerr else None, yerr=_yerr(r), fmt="o",
                    capsize=3, color=CATEGORY_COLOURS.get(cat, "k"), alpha=0.8)
        pts.append((label(s, r, xs), xs["value"].iloc[0], r["value"].iloc[0]))
    _label_groups(fig, ax, pts)
    return fig, ax, cats


def recall_vs_fpr(a: Assessment):
    """One point per scheme at (FPR, recall), Wilson 95% intervals as bars."""
    plt = _plt()
    df = a.measurements
    rec, fpr = overall(df, "recall").set_index("scheme"), overall(df, "fpr").set_index("scheme")
    schemes = [s for s in rec.index if s in fpr.index and not pd.isna(rec.loc[s, "value"])]
    fig, ax, cats = _recall_scatter(a, plt, schemes, rec, fpr, xerr=True,
                                    label=lambda s, r, f: f"{s} (n={int(r['n'].iloc[0])}/{int(f['n'].iloc[0])})")
    ax.set_xlabel("false positive rate on benign images (Wilson 95% CI)")
    ax.set_ylabel("recall on known images (Wilson 95% CI)")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(left=-0.005)
    ax.set_title("Recall vs false positive rate per scheme")
    ax.grid(alpha=0.3)
    _legend_categories(ax, cats)
    if not schemes:
        ax.text(0.5, 0.5, "no recall/FPR stored in this run", ha="center", transform=ax.transAxes)
    return fig


def cost_vs_list_size(a: Assessment, sweep: pd.DataFrame | None = None):
    """Cost metrics against list size; ``sweep`` adds stored measurements at other sizes."""
    plt = _plt()
    df = pd.concat([a.measurements, sweep]) if sweep is not None and len(sweep) else a.measurements
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    sizes_seen = set()
    for ax, (metric, label) in zip(axes.ravel(), COST_METRICS):
        d = df[df.metric == metric].copy()
        d["list_size"] = d["params"].map(lambda p: _params(p).get("list_size"))
        d = d.dropna(subset=["list_size", "value"])
        for k, (s, g) in enumerate(d.groupby("scheme", sort=True)):
            g = g.sort_values("list_size")
            sizes_seen.update(g["list_size"])
            cat = _category(a, s)
            ax.errorbar(g["list_size"], g["value"], yerr=_yerr(g), marker="os^vDPX*"[k % 8], capsize=2, label=s,
                        color=CATEGORY_COLOURS.get(cat), alpha=0.85)
        ax.set_xscale("log")
        if len(d) and (d["value"] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("list size (entries)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    h, l = axes[0, 0].get_legend_handles_labels()
    if h:
        fig.legend(h, l, loc="lower center", ncol=min(5, len(l)), fontsize=8)
    note = "" if len(sizes_seen) > 1 else " (one list size stored: points, not curves)"
    fig.suptitle("Cost vs list size" + note)
    fig.tight_layout(rect=(0, 0.07 if h else 0, 1, 1))
    return fig


def privacy_vs_effectiveness(a: Assessment):
    """What the provider learns per benign image (bits) against recall."""
    plt = _plt()
    df = a.measurements
    rec = overall(df, "recall").set_index("scheme")
    bits = overall(df, "provider_learns_per_benign_bits").set_index("scheme")
    schemes = [s for s in rec.index if s in bits.index and not pd.isna(rec.loc[s, "value"])
               and not pd.isna(bits.loc[s, "value"])]
    fig, ax, cats = _recall_scatter(a, plt, schemes, rec, bits, xerr=False, label=lambda s, r, b: s)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.5)
    ax.set_ylim(-0.02, 1.05)
    ax.axvline(1, color="#999", ls=":", lw=1)
    ax.text(1, 0.02, " 1 bit (a verdict)", fontsize=7, color="#666")
    ax.axvline(256, color="#999", ls=":", lw=1)
    ax.text(256, 0.02, " 256 bits (a PDQ hash)", fontsize=7, color="#666")
    ax.set_xlabel("provider learns per benign image (bits, symlog)")
    ax.set_ylabel("recall (Wilson 95% CI)")
    ax.set_title("Privacy vs effectiveness (up and to the left is better)")
    ax.grid(alpha=0.3)
    _legend_categories(ax, cats)
    return fig


def transform_heatmap(a: Assessment):
    """Recall per scheme and transform family (cell text: recall and n)."""
    plt = _plt()
    d = a.measurements[a.measurements.metric == "recall"].copy()
    d["slice"] = d["params"].map(lambda p: _params(p).get("slice"))
    d = d.dropna(subset=["slice"])
    d = d[d["slice"] != "all"]
    order = list(a.table["scheme"])
    schemes = sorted(dict.fromkeys(d["scheme"]), key=lambda x: order.index(x) if x in order else len(order))
    slices = sorted(set(d["slice"]))
    val = np.full((len(schemes), len(slices)), np.nan)
    ns = np.zeros_like(val, dtype=int)
    for _, r in d.iterrows():
        i, j = schemes.index(r["scheme"]), slices.index(r["slice"])
        val[i, j] = r["value"]
        ns[i, j] = int(r["n"])
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(slices) + 3), max(2.5, 0.45 * len(schemes) + 1.8)))
    im = ax.imshow(np.ma.masked_invalid(val), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(slices)), slices, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(schemes)), schemes, fontsize=8)
    for i in range(len(schemes)):
        for j in range(len(slices)):
            if not math.isnan(val[i, j]):
                dark = val[i, j] < 0.2 or val[i, j] > 0.8
                ax.text(j, i, f"{val[i, j]:.2f}\nn={ns[i, j]}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="recall")
    ax.set_title("Recall per transform family (known images as sent)")
    if not schemes:
        ax.text(0.5, 0.5, "no per-transform recall stored", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


FIGURES = {"recall_vs_fpr": recall_vs_fpr, "cost_vs_list_size": cost_vs_list_size,
           "privacy_vs_effectiveness": privacy_vs_effectiveness, "transform_recall_heatmap": transform_heatmap}


def write_figures(a: Assessment, out_dir: str | Path, sweep: pd.DataFrame | None = None, dpi: int = 130) -> list[Path]:
    """Write every figure as PNG into ``out_dir``; returns the paths."""
    plt = _plt()
    out = Path(out_dir)
    paths = []
    for name, fn in FIGURES.items():
        fig = fn(a, sweep) if name == "cost_vs_list_size" else fn(a)
        p = out / f"{name}.png"
        fig.savefig(p, dpi=dpi)
        plt.close(fig)
        paths.append(p)
    return paths
