"""Printing results: one table, four formats (table, json, md, csv), same numbers in each."""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

FORMATS = ("table", "json", "md", "csv")

SUMMARY_METRICS = ["recall", "fpr", "precision", "client_ms", "server_ms", "bytes_up", "bytes_down",
                   "detection_bytes_up", "detection_bytes_down", "rounds", "server_rounds", "server_bytes",
                   "device_storage_bytes", "bundle_bytes", "setup_s", "hash_visible_to_provider", "verdict_to"]
# metrics stored once per party or per leg (params "party" / "leg"): shown as one dict per scheme
BY_PARTY = {"cpu_ms": "party", "leg_bytes": "leg", "setup_cpu_s": "party", "setup_leg_bytes": "leg"}


def _num(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):
        v = v.item()
    return v


def fmt_value(v: Any, unit: str | None = None) -> str:
    v = _num(v)
    if v is None:
        return "n/a"
    if unit == "bool":
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}" if unit == "rate" else f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def _no_number(row: pd.Series) -> str | None:
    """What a cell shows when the measurement holds text instead of a number."""
    if row.get("text") is not None and (row.get("value") is None or pd.isna(row.get("value"))):
        return str(row["text"])
    return None if _num(row["value"]) is not None else "n/a"


LABEL_MEANINGS = {  # what a label says about a number; "measured" is the default and goes unmarked
    "declared": "stated by the scheme's metadata, not measured",
    "modelled": "computed by a model from measured inputs, or a modelled party",
    "sampled": "measured on a sample of the run's messages",
    "bounded": "a bound the data certifies, not a point estimate",
    "extrapolated": "extended beyond the sizes measured",
}


def label_of(row: pd.Series) -> str:
    lab = row.get("label")
    return "" if lab is None or (isinstance(lab, float) and math.isnan(lab)) or lab == "measured" else str(lab)


def labelled(text: str, row: pd.Series, sep: str = " ") -> str:
    """A cell's text with its label appended where the number is not a plain measurement."""
    lab = label_of(row)
    return f"{text}{sep}({lab})" if lab else text


def labels_footer(df: pd.DataFrame) -> str:
    """What the labels in this table mean (only those it holds)."""
    labs = sorted({label_of(r) for _, r in df.iterrows()} - {""}) if len(df) else []
    if not labs:
        return "Every value is measured on this run."
    return "Unmarked values are measured; " + "; ".join(f"({k}) = {LABEL_MEANINGS.get(k, k)}" for k in labs) + "."


def cell(row: pd.Series) -> str:
    return labelled(_cell(row), row)


def _cell(row: pd.Series) -> str:
    if (t := _no_number(row)) is not None:
        return t
    s = fmt_value(row["value"], row.get("unit"))
    lo, hi = _num(row.get("ci_low")), _num(row.get("ci_high"))
    if lo is not None and hi is not None:
        s += f" [{fmt_value(lo, row.get('unit'))}, {fmt_value(hi, row.get('unit'))}]"
    if row.get("unit") in ("rate",):
        s += f" n={int(row['n'])}"
    return s


def overall_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One measurement per scheme and metric: the unsliced one (recall over all transforms)."""
    def is_overall(p: str) -> bool:
        d = json.loads(p) if isinstance(p, str) else (p or {})
        return d.get("slice", "all") == "all"
    return df[df["params"].map(is_overall)]


def summary_wide(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    metrics = metrics or SUMMARY_METRICS
    d = overall_rows(df)
    d = d[d["metric"].isin(metrics)]
    rows = []
    for scheme, g in d.groupby("scheme", sort=False):
        r = {"scheme": scheme}
        for _, m in g.iterrows():
            r[m["metric"]] = cell(m)
        rows.append(r)
    out = pd.DataFrame(rows)
    cols = ["scheme"] + [m for m in metrics if m in out.columns]
    return out[cols] if not out.empty else out


def measurement_record(m: pd.Series) -> dict[str, Any]:
    """One stored row as JSON: its params as an object, every column the store holds."""
    p = m.get("params")
    params = json.loads(p) if isinstance(p, str) and p else (p if isinstance(p, dict) else {})
    text = m.get("text")
    return {"params": params, "value": _num(m["value"]), "ci_low": _num(m.get("ci_low")),
            "ci_high": _num(m.get("ci_high")), "unit": m.get("unit"), "n": None if _num(m.get("n")) is None else int(m["n"]),
            "label": m.get("label"), "text": None if text is None or (isinstance(text, float) and math.isnan(text)) else text}


def measurements_by_metric(df: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Every stored measurement of one scheme, grouped by metric (a metric may have several rows:
    slices, attack modes, list sizes), each with its params, value, interval, unit, n, label, text."""
    out: dict[str, list[dict[str, Any]]] = {}
    for _, m in df.iterrows():
        out.setdefault(str(m["metric"]), []).append(measurement_record(m))
    return out


def summary_json(df: pd.DataFrame, metrics: list[str] | None = None) -> list[dict]:
    """Per scheme: the summary metrics (overall rows) as keys, and under ``measurements`` every
    row the store holds for the scheme in this run."""
    metrics = metrics or SUMMARY_METRICS
    d = overall_rows(df)
    d = d[d["metric"].isin(metrics)]
    out = []
    for scheme in dict.fromkeys(df["scheme"]) if len(df) else []:
        g = d[d.scheme == scheme]
        r: dict[str, Any] = {"scheme": scheme}
        for _, m in g.iterrows():
            r[m["metric"]] = _cell_json(m)
            if m.get("text") is not None:
                r[m["metric"]]["text"] = m["text"]
        for metric, key in BY_PARTY.items():
            rows = df[(df.scheme == scheme) & (df.metric == metric)]
            if len(rows):
                r[f"{metric}_by_{key}"] = {json.loads(m["params"])[key]: _cell_json(m) for _, m in rows.iterrows()}
        cost = g[g.metric == "server_ms"]
        p = json.loads(cost.iloc[0]["params"]) if len(cost) and isinstance(cost.iloc[0]["params"], str) else {}
        for k in ("list_size", "synthetic_padding", "messages_sampled", "messages_total"):
            if k in p:
                r[k] = p[k]
        r["measurements"] = measurements_by_metric(df[df.scheme == scheme])
        by_party = leakage_by_party(df[df["scheme"] == scheme])
        if by_party:
            r["leakage"] = by_party
        out.append(r)
    return out


def _cell_json(m: pd.Series) -> dict:
    return {"value": _num(m["value"]), "ci_low": _num(m["ci_low"]), "ci_high": _num(m["ci_high"]),
            "unit": m["unit"], "n": int(m["n"]), "label": m["label"]}


def leakage_by_party(df: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """party -> metric -> figure, for every measurement that names a party (the leakage probes,
    labelled measured, and the leakage function, labelled declared). A figure at a list size
    other than the run's (a padded list) is keyed ``metric@list_size``; linkability over one
    sender's own repeats ``linkability_advantage:same-sender``; the count probe per k
    ``below_threshold_advantage:k=1``."""
    out: dict[str, dict[str, dict]] = {}
    sizes = []
    rows = []
    for _, m in df.iterrows():
        p = json.loads(m["params"]) if isinstance(m["params"], str) else (m["params"] or {})
        if "party" in p:
            rows.append((p, m))
            if p.get("padding") is None and "list_size" in p:
                sizes.append(p["list_size"])
    base = min(sizes) if sizes else None
    for p, m in rows:
        key = m["metric"] + (f":{p['pairs']}" if p.get("pairs") not in (None, "any") else "")
        key += f":k={p['k']}" if "k" in p else ""  # below-threshold counting, per k
        key += "" if p.get("list_size") in (None, base) else f"@{p['list_size']}"
        e = {"value": _num(m["value"]), "ci_low": _num(m["ci_low"]), "ci_high": _num(m["ci_high"]),
             "unit": m["unit"], "n": int(m["n"]), "label": m["label"]}
        if m.get("text") is not None and not (isinstance(m["text"], float)):
            e["text"] = m["text"]
        out.setdefault(str(p["party"]), {})[key] = e
    return out


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    esc = lambda x: str(x).replace("|", "\\|")
    lines = ["| " + " | ".join(map(esc, cols)) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(esc("" if pd.isna(r[c]) else r[c]) if not isinstance(r[c], (list, dict)) else esc(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: str, title: str | None = None, records: Any = None) -> str | None:
    """Return the text for json/md/csv; print a Rich table for 'table' and return None."""
    if fmt == "json":
        from e2eebench.evaluation.run.strictjson import dumps
        return dumps(records if records is not None else json.loads(df.to_json(orient="records")), indent=2)
    if fmt == "md":
        return (f"### {title}\n\n" if title else "") + to_markdown(df)
    if fmt == "csv":
        return df.to_csv(index=False)
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title, show_lines=False)
    for c in df.columns:
        t.add_column(str(c), overflow="fold")
    for _, r in df.iterrows():
        t.add_row(*["" if (not isinstance(r[c], (list, dict)) and pd.isna(r[c])) else str(r[c]) for c in df.columns])
    Console(width=max(160, Console().width)).print(t)
    return None


# -- the terminal view of a run: two narrow tables instead of one unreadable wide one ------

TERMINAL_GROUPS = [
    ("Effectiveness and privacy", [("recall", "recall"), ("fpr", "FPR"), ("precision", "precision"),
                                   ("hash_visible_to_provider", "hash visible\nto provider"),
                                   ("verdict_to", "verdict to")]),
    ("Cost per image message", [("client_ms", "device\nCPU ms"), ("server_ms", "server\nCPU ms"),
                                ("detection_bytes_up", "detection\nbytes up"),
                                ("detection_bytes_down", "detection\nbytes down"),
                                ("bytes_up", "all bytes\nup"), ("rounds", "device\nround trips"),
                                ("device_storage_bytes", "device\nstorage"), ("setup_s", "setup\nCPU s")]),
]


def human_bytes(v: float) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.0f} B"


def compact_cell(row: pd.Series) -> str:
    """Value on the first line, interval and n below, the label last: what a reader quotes,
    how sure it is, and whether it was measured."""
    return labelled(_compact_cell(row), row, "\n")


def _compact_cell(row: pd.Series) -> str:
    unit = row.get("unit")
    if (t := _no_number(row)) is not None:
        return t
    v = _num(row["value"])
    if unit == "bool":
        return "yes" if v else "no"
    if unit == "bytes":
        return human_bytes(v)
    def fmt(x: float) -> str:
        return f"{x:.3g}"
    s = fmt(v)
    lo, hi = _num(row.get("ci_low")), _num(row.get("ci_high"))
    if unit == "rate":
        s += f"\n[{fmt(lo)}, {fmt(hi)}]" if lo is not None and hi is not None else ""
        s += f"\nn={int(row['n'])}"
    return s


def render_run_terminal(df: pd.DataFrame, title: str, order: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    d = overall_rows(df)
    console = Console()
    console.print(f"[bold]{title}[/bold]")
    for group, cols in TERMINAL_GROUPS:
        t = Table(title=group, show_lines=True, title_justify="left")
        t.add_column("scheme", no_wrap=True)
        for _, header in cols:
            t.add_column(header, justify="right" if header != "verdict to" else "left")
        groups = dict(list(d.groupby("scheme", sort=False)))
        names = [n for n in (order or []) if n in groups] + [n for n in groups if n not in (order or [])]
        for scheme in names:
            g = groups[scheme]
            by = {r["metric"]: r for _, r in g.iterrows()}
            sampled = ""
            for _, r in g.iterrows():
                p = json.loads(r["params"]) if isinstance(r["params"], str) else {}
                if p.get("messages_sampled"):
                    sampled = f"\n(sample of {p['messages_sampled']}\nof {p['messages_total']} images)"
                    break
            t.add_row(scheme + sampled, *[compact_cell(by[m]) if m in by else "n/a" for m, _ in cols])
        console.print(t)
    t = Table(title="Cost by party and leg, per image message", show_lines=True, title_justify="left")
    for c in ("scheme", "CPU ms per party", "bytes per leg", "server\nrounds"):
        t.add_column(c, no_wrap=c == "scheme", justify="left" if c != "server\nrounds" else "right")
    groups = dict(list(df.groupby("scheme", sort=False)))
    for scheme in [n for n in (order or []) if n in groups] + [n for n in groups if n not in (order or [])]:
        g = groups[scheme]
        def listing(metric: str, key: str, fmt) -> str:
            rows = g[g.metric == metric]
            return "\n".join(f"{json.loads(r['params'])[key]} {fmt(r['value'])}" for _, r in rows.iterrows()
                             if _num(r["value"]) is not None)
        sr = g[g.metric == "server_rounds"]
        t.add_row(scheme, listing("cpu_ms", "party", lambda v: f"{v:.3g}"),
                  listing("leg_bytes", "leg", human_bytes),
                  f"{sr.iloc[0]['value']:.3g}" if len(sr) and _num(sr.iloc[0]["value"]) is not None else "n/a")
    console.print(t)
    console.print("server CPU ms = the sum over every party that is not a user's device; rounds = round trips "
                  "the sending device waits for; server rounds = flights between non-device parties.")
    shown = d[d["metric"].isin([m for _, cols in TERMINAL_GROUPS for m, _ in cols])]
    console.print("Rates: 95% Wilson interval and sample size. Costs: CPU time actually spent and bytes that "
                  "crossed the channel, mean per image message. " + labels_footer(shown)
                  + " Use --format json for every stored measurement.")
