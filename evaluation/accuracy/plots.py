"""Plots of a robustness benchmark (matplotlib, Agg backend: files only, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from e2eebench.protocols.errors import InputError


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_histograms(result, path: Path) -> Path:
    """Matched vs unrelated distance histograms (log counts) per hasher, default threshold marked."""
    plt = _plt()
    recs = [r for r in result.records if r.quality_filter is None]
    fig, axes = plt.subplots(1, len(recs), figsize=(4.2 * len(recs), 3.4), squeeze=False)
    for ax, r in zip(axes[0], recs):
        m = r.matched.ravel()
        m = m[m <= r.bits]
        x = np.arange(r.bits + 1)
        ax.bar(x, np.bincount(m, minlength=r.bits + 1)[:r.bits + 1] / max(1, m.size), width=1.0, alpha=0.6,
               label=f"matched (n={m.size})")
        ax.bar(x, r.pooled_hist / max(1, r.pairs), width=1.0, alpha=0.6, label=f"unrelated (pairs={r.pairs:.2g})")
        ax.axvline(r.default_threshold + 0.5, color="k", ls="--", lw=1, label=f"default {r.default_threshold}")
        if r.calibrated_threshold is not None:
            ax.axvline(r.calibrated_threshold + 0.5, color="r", ls=":", lw=1, label=f"calibrated {r.calibrated_threshold}")
        ax.set_yscale("log")
        ax.set_title(r.hasher)
        ax.set_xlabel("Hamming distance (bits)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fraction")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(result, path: Path) -> Path:
    """ROC per hasher (all transforms pooled), pair FPR on a log axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for r in result.records:
        roc = result.roc(r.hasher, r.quality_filter)
        keep = roc.fpr > 0
        ax.plot(roc.fpr[keep], roc.tpr[keep], marker=".", ms=3, label=f"{r.key} (pairs {r.pairs:.2g})")
        floor = 1.0 / max(1, r.pairs)
        ax.axvline(floor, color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("pair FPR (dotted: 1 / pairs, below which only bounds exist)")
    ax.set_ylabel("TPR (all transforms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(result, path: Path, metric: str = "recall") -> Path:
    """Hasher x transform recall at the default threshold (or another metric of to_frame)."""
    plt = _plt()
    df = result.to_frame()
    df = df[(df.metric == metric) & df.quality_filter.isna() & (df["transform"] != "all")]
    if "threshold_kind" in df:
        df = df[df.threshold_kind.isna() | (df.threshold_kind == "default")]
    t = df.pivot_table(index="hasher", columns="transform", values="value", aggfunc="first", sort=False)
    fig, ax = plt.subplots(figsize=(0.62 * t.shape[1] + 2.5, 0.5 * t.shape[0] + 2.2))
    im = ax.imshow(t.to_numpy(float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(t.shape[1]), t.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(t.shape[0]), t.index)
    for i in range(t.shape[0]):
        for j in range(t.shape[1]):
            v = t.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=ax, label=f"{metric} (default threshold)")
    ax.set_title(f"{metric}, n={result.n} sources per cell")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_all(result, folder: Path) -> list[Path]:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create plot folder {folder}: {e.__class__.__name__}") from None
    return [plot_histograms(result, folder / "accuracy_histograms.png"), plot_roc(result, folder / "accuracy_roc.png"),
            plot_heatmap(result, folder / "accuracy_recall_heatmap.png")]


def plot_precision_prevalence(measurements, path: Path) -> Path:
    """Precision (modelled) against the assumed prevalence of known images, one line per scheme,
    the propagated interval shaded; ``measurements`` is a run's stored rows (a DataFrame)."""
    import json
    plt = _plt()
    d = measurements[measurements.metric == "precision"]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for scheme, g in d.groupby("scheme", sort=False):
        rows = [(json.loads(p).get("prevalence"), v, lo, hi) for p, v, lo, hi
                in zip(g.params, g.value, g.ci_low, g.ci_high)
                if json.loads(p).get("slice", "").startswith("prevalence=")]
        if not rows:
            continue
        rows.sort()
        x = [r[0] for r in rows]
        ax.plot(x, [r[1] for r in rows], marker="o", ms=3, label=scheme)
        ax.fill_between(x, [r[2] for r in rows], [r[3] for r in rows], alpha=0.15)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("assumed prevalence of known images among images sent")
    ax.set_ylabel("precision (modelled)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
