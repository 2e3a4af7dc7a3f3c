"""Printing results: one table, four formats (table, json, md, csv), same numbers in each."""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

FORMATS = ("table", "json", "md", "csv")

SUMMARY_METRICS = ["recall", "fpr", "precision", "client_ms", "server_ms", "bytes_up", "bytes_down",
                   "detection_bytes_up", "detection_bytes_down", "rounds", "device_storage_bytes", "setup_s", "hash_visible_to_provider", "verdict_to"]


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


def cell(row: pd.Series) -> str:
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


def summary_json(df: pd.DataFrame, metrics: list[str] | None = None) -> list[dict]:
    metrics = metrics or SUMMARY_METRICS
    d = overall_rows(df)
    d = d[d["metric"].isin(metrics)]
    out = []
    for scheme, g in d.groupby("scheme", sort=False):
        r: dict[str, Any] = {"scheme": scheme}
        for _, m in g.iterrows():
            r[m["metric"]] = {"value": _num(m["value"]), "ci_low": _num(m["ci_low"]), "ci_high": _num(m["ci_high"]),
                              "unit": m["unit"], "n": int(m["n"]), "label": m["label"]}
            if m.get("text") is not None:
                r[m["metric"]]["text"] = m["text"]
        by_party = leakage_by_party(df[df["scheme"] == scheme])
        if by_party:
            r["leakage"] = by_party
        out.append(r)
    return out


def leakage_by_party(df: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """party -> metric -> figure, for every measurement that names a party (the leakage probes,
    labelled measured, and the leakage function, labelled declared). A figure at a list size
    other than the run's (a padded list) is keyed ``metric@list_size``; linkability over one
    sender's own repeats ``linkability_advantage:same-sender``."""
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
        return json.dumps(records if records is not None else json.loads(df.to_json(orient="records")),
                          indent=2, default=str)
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
                                ("bytes_up", "all bytes\nup"), ("rounds", "rounds"),
                                ("device_storage_bytes", "device\nstorage"), ("setup_s", "setup\nCPU s")]),
]


def human_bytes(v: float) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.0f} B"


def compact_cell(row: pd.Series) -> str:
    """Value on the first line, interval and n below: what a reader quotes, and how sure it is."""
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
    console.print("Rates: 95% Wilson interval and sample size. Costs: CPU time actually spent and bytes that "
                  "crossed the channel, mean per image message. Use --format json|md|csv for every number.")
