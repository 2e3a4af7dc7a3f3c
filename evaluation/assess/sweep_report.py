"""Figures of a sweep: cost and effectiveness against list size and threshold, from the store.

Every point drawn from a cell is a stored measurement of that cell (mean over the grid's seeds
where there are several, the seed count in the table). Points keep their stored label:
``measured`` points are filled markers on solid lines, any other label (modelled, bounded,
extrapolated) hollow markers on dashed lines, named in the legend. Beyond the largest list size
of the grid the cost metrics are *extrapolated* by a power law ``y = a * n^b`` fitted by least
squares in log-log space to that scheme's measured points (at least two list sizes, all values
positive); those points are labelled ``extrapolated`` in the figure and in ``sweep_points.csv``.
Recall and FPR are not extrapolated: they do not follow a curve in the list size that a fit
could trust.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from e2eebench.protocols.errors import InputError
from e2eebench.evaluation.run.store import ResultStore
from e2eebench.evaluation.run.sweep import Cell, load_sweep, stale_note, status

EFFECT = (("recall", "recall (distinct known images)"), ("fpr", "FPR (distinct benign images)"))
COST = (("client_ms", "device CPU per image (ms)"), ("server_ms", "server CPU per image (ms)"),
        ("bytes_total", "bytes per message"), ("device_storage_bytes", "device storage (bytes)"))
METRICS = dict(EFFECT + COST)
COLUMNS = ["scheme", "list_size", "threshold", "hasher", "metric", "value", "seeds", "label"]


@dataclass
class SweepReport:
    points: pd.DataFrame          # one row per drawn point (COLUMNS)
    figures: list[Path]
    table: Path
    notes: list[str] = field(default_factory=list)


def _overall(params: str) -> bool:
    """The run-wide row of a metric (recall and FPR are also stored per slice and per message)."""
    p = json.loads(params) if params else {}
    return p.get("slice", "all") == "all"


def _threshold(params: str, fallback: str) -> Any:
    p = json.loads(params) if params else {}
    return p.get("threshold_used", p.get("threshold", fallback))


def cell_points(cells: Sequence[Cell], db: str | Path) -> pd.DataFrame:
    """The stored values of every done cell for the figures' metrics, averaged over seeds."""
    rows = []
    with ResultStore(db) as store:
        done = store.cells([c.key for c in cells])
        done = done[done.status == "done"]
        by_key = {c.key: c for c in cells}
        for r in done.itertuples():
            cell = by_key[r.cell_key]
            m = store.measurements(r.run_id)
            m = m[m.metric.isin(list(METRICS)) & m.params.map(_overall)]
            for x in m.itertuples():
                if x.value is None or (isinstance(x.value, float) and math.isnan(x.value)):
                    continue
                lab = cell.label
                rows.append({"scheme": lab["scheme"], "list_size": int(lab["list_size"]),
                             "threshold": _threshold(x.params, lab["threshold"]), "hasher": lab["hasher"],
                             "metric": x.metric, "value": float(x.value), "seed": lab["seed"],
                             "label": x.label})
    df = pd.DataFrame(rows, columns=COLUMNS[:-2] + ["seed", "label"])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    keys = ["scheme", "list_size", "threshold", "hasher", "metric", "label"]
    out = df.groupby(keys, as_index=False).agg(value=("value", "mean"), seeds=("seed", "nunique"))
    return out[COLUMNS].sort_values(["metric", "scheme", "threshold", "list_size"]).reset_index(drop=True)


def extrapolate(points: pd.DataFrame, to_size: int) -> pd.DataFrame:
    """Cost beyond the grid: a log-log least-squares line through each (scheme, threshold,
    hasher, metric)'s measured points, evaluated at sizes between the largest measured and
    ``to_size`` (one point per decade and the end). Rows labelled ``extrapolated``."""
    import numpy as np
    rows = []
    cost = points[points.metric.isin([m for m, _ in COST]) & (points.label == "measured")]
    for (scheme, thr, hasher, metric), g in cost.groupby(["scheme", "threshold", "hasher", "metric"]):
        g = g.sort_values("list_size")
        if g.list_size.nunique() < 2 or (g.value <= 0).any() or to_size <= g.list_size.max():
            continue
        b, a = np.polyfit(np.log(g.list_size.to_numpy(float)), np.log(g.value.to_numpy(float)), 1)
        top = int(g.list_size.max())
        sizes = sorted({int(10 ** k) for k in range(int(math.log10(top)) + 1, int(math.log10(to_size)) + 1)
                        if top < 10 ** k < to_size} | {int(to_size)})
        for n in sizes:
            rows.append({"scheme": scheme, "list_size": n, "threshold": thr, "hasher": hasher, "metric": metric,
                         "value": float(math.exp(a) * n ** b), "seeds": int(g.seeds.min()), "label": "extrapolated"})
    return pd.DataFrame(rows, columns=COLUMNS)


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


MARKERS = "osD^vP*X"


def _draw(ax, g: pd.DataFrame, x: str, colour, marker: str, name: str) -> None:
    """Measured: filled markers, solid line. Any other label: hollow markers, dashed, named."""
    meas = g[g.label == "measured"].sort_values(x)
    if len(meas):
        ax.plot(meas[x], meas.value, "-", marker=marker, color=colour, label=f"{name} (measured)")
    for lab, h in g[g.label != "measured"].groupby("label"):
        h = h.sort_values(x)
        start = meas.tail(1) if lab == "extrapolated" and len(meas) else h.head(0)
        line = pd.concat([start, h])
        ax.plot(line[x], line.value, "--", color=colour, alpha=0.8)
        ax.plot(h[x], h.value, ls="", marker=marker, color=colour, mfc="white", label=f"{name} ({lab})")


def _panel_grid(plt, n: int):
    cols = 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def plot_against(points: pd.DataFrame, x: str, path: Path, title: str) -> Path | None:
    """One panel per metric; one line per scheme and value of the other grid axis."""
    plt = _plt()
    other = "threshold" if x == "list_size" else "list_size"
    metrics = [m for m in METRICS if m in set(points.metric)]
    if not metrics:
        return None
    fig, axes = _panel_grid(plt, len(metrics))
    schemes = sorted(points.scheme.unique())
    colours = {s: plt.cm.tab10(i % 10) for i, s in enumerate(schemes)}
    markers = {o: MARKERS[i % len(MARKERS)] for i, o in enumerate(sorted(points[other].unique(), key=str))}
    for ax, metric in zip(axes, metrics):
        d = points[points.metric == metric]
        for (scheme, o, hasher), g in d.groupby(["scheme", other, "hasher"]):
            name = f"{scheme}, {other.replace('_', ' ')} {o}" + (f", {hasher}" if d.hasher.nunique() > 1 else "")
            _draw(ax, g, x, colours[scheme], markers[o], name)
        ax.set_title(METRICS[metric], fontsize=9)
        ax.set_xlabel("list size" if x == "list_size" else "threshold (Hamming distance used)")
        if x == "list_size":
            ax.set_xscale("log")
        if metric in dict(COST) and (d.value > 0).all() and len(d):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_sweep_report(config: str | Path, db: str | Path, out: str | Path,
                      extrapolate_to: int | None = None) -> SweepReport:
    """Figures and a table of points for the done cells of a sweep file's grid in ``db``."""
    cells = load_sweep(config)
    if not Path(db).exists():
        raise InputError(f"results database not found: {db}")
    notes = []
    rows = status(cells, db)
    n_done = sum(r["status"] == "done" for r in rows)
    stale = stale_note(rows)
    if n_done == 0:
        raise InputError(f"no cell of {Path(config).name} is done in {db} under this code version"
                         + (f" ({stale})" if stale else "") + ": run `e2eebench sweep` first")
    if n_done < len(rows):
        notes.append(f"{len(rows) - n_done} of {len(rows)} cells are not done; the figures show the {n_done} done")
    if stale:
        notes.append(stale)
    points = cell_points(cells, db)
    missing = [m for m in METRICS if m not in set(points.metric)]
    if missing:
        notes.append(f"not drawn, no stored value in the done cells: {', '.join(missing)} "
                     "(recall needs known images among the messages)")
    sizes = sorted(points.list_size.unique())
    target = extrapolate_to if extrapolate_to is not None else (10 * int(sizes[-1]) if sizes else 0)
    extra = extrapolate(points, target) if target else pd.DataFrame(columns=COLUMNS)
    if target and extra.empty and len(sizes) < 2:
        notes.append("no extrapolation: the grid has one list size")
    elif len(extra):
        notes.append(f"cost beyond list size {int(sizes[-1]):,} is extrapolated to {target:,} "
                     "(power-law fit to the measured points; dashed, labelled)")
    allp = pd.concat([points, extra], ignore_index=True) if len(extra) else points
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "sweep_points.csv"
    allp.to_csv(table, index=False)
    figs = []
    name = Path(config).name
    f = plot_against(allp, "list_size", out / "sweep_list_size.png",
                     f"sweep {name}: cost and effectiveness against list size (mean over seeds)")
    if f:
        figs.append(f)
    if points.threshold.nunique() > 1:
        f = plot_against(points, "threshold", out / "sweep_threshold.png",
                         f"sweep {name}: cost and effectiveness against threshold (mean over seeds)")
        if f:
            figs.append(f)
    else:
        notes.append("no threshold figure: the grid has one threshold")
    return SweepReport(allp, figs, table, notes)
