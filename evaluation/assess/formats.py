"""The assessment table in six formats: md, csv and json (long), latex, xlsx, html.

All six are drawn from the same :class:`Assessment`, so they carry the same numbers; the
layout is an overview (ratings per criterion) followed by one figures table per criterion
(value, 95% interval and n per metric, coloured by its rating) and a provenance footer.
"""
from __future__ import annotations

import html
import io
import json
import math
from typing import Any, Callable

import pandas as pd

from e2eebench.evaluation.assess.assessment import MEASURED, MODELLED, Assessment, CriterionCell, MetricCell

FORMATS = ("md", "csv", "json", "latex", "xlsx", "html")
SUFFIX = {"md": "md", "csv": "csv", "json": "json", "latex": "tex", "xlsx": "xlsx", "html": "html"}
EMOJI = {"green": "🟢", "amber": "🟠", "red": "🔴", "grey": "⚪"}


# -- text pieces shared by every format -----------------------------------------------------
def fmt_num(x: float | None) -> str:
    """A stored number for reading: 4 significant digits, thousands separated when large."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    x = float(x)
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e7 or a < 1e-3:
        return f"{x:.3e}".replace("e-0", "e-").replace("e+0", "e+")
    if a >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def value_text(m: MetricCell) -> str:
    if not m.measured:
        return "not measured"
    if m.value is None:
        return m.text or "no value"
    if m.unit == "bool":
        return "yes" if m.value else "no"
    return fmt_num(m.value)


def interval_text(m: MetricCell) -> str:
    parts = []
    if m.measured and m.value is not None and m.ci_low is not None and m.ci_high is not None:
        parts.append(f"[{fmt_num(m.ci_low)}, {fmt_num(m.ci_high)}]")
    if m.measured:
        parts.append(f"n={m.n}")
    if m.measured and m.label != MEASURED:
        parts.append(f"({m.label})")
    return " ".join(parts)


def cell_text(m: MetricCell) -> str:
    return " ".join(p for p in (value_text(m), interval_text(m)) if p)


def note_text(m: MetricCell, rubric) -> str:
    """The short reason beside a figure: inconclusive (and the n that settles it), shown not
    rated, not applicable. Empty for a plainly rated or missing figure."""
    if m.shown:
        return "shown, not rated" if m.measured else ""
    if not m.measured:
        return ""
    if m.inconclusive:
        span = f"{m.best}\u2013{m.rating}"
        return (f"inconclusive ({span}): n = {m.resolve_n:,} would resolve" if m.resolve_n
                else f"inconclusive ({span}): on a threshold")
    if m.rating not in rubric.ratings:
        return f"{m.label}: not rated" if m.value is not None and m.label not in rubric.rated_labels else ""
    if "not_applicable" in (m.note or ""):
        return "does not apply: " + m.rating
    return ""


def full_cell_text(m: MetricCell, rubric) -> str:
    """Figure, interval, n, label and note: everything a reader needs, in one line."""
    n = note_text(m, rubric)
    return cell_text(m) + (f" \u2014 {n}" if n else "")


def criterion_text(cc: CriterionCell, rubric) -> str:
    counts = f"{cc.rated} of {cc.total} measured"
    if cc.rated == 0:
        return f"{rubric.label(rubric.not_measured)} ({counts})"
    if not cc.complete:
        if cc.rating == rubric.not_measured:
            return f"incomplete ({counts}; none of them worse than {rubric.ratings[0]})"
        return f"{cc.rating} ({counts}, incomplete)"
    if cc.inconclusive:
        return f"{cc.rating}, inconclusive: {cc.best} if the intervals narrow ({counts})"
    return f"{cc.rating} ({counts})"


def _all_cells(a: Assessment) -> list[MetricCell]:
    return [m for _, r in a.table.iterrows() if _ran(r["status"]) for c in a.criteria for m in r[c.key].cells]


LABEL_MEANINGS = {
    "declared": "stated by the scheme, not measured",
    "modelled": "computed by a model, or a modelled party",
    "sampled": "measured on a sample of the run's messages",
    "bounded": "a bound the data certifies",
    "extrapolated": "extended beyond the sizes measured",
}


def legend_sentences(a: Assessment) -> list[str]:
    """How to read this table: the rules that decided its colours, worded for what it holds."""
    rub = a.rubric
    cells = _all_cells(a)
    out = ["Each figure is rated on the end of its 95% interval that is worse for the scheme "
           "(a figure stored without an interval, on its value)."]
    if any(m.inconclusive for m in cells):
        out.append("A figure whose interval spans two ratings is marked inconclusive, with the sample size "
                   "at the observed value that would settle it; it keeps the worse rating.")
    labs = sorted({m.label for m in cells if m.measured and m.label != "measured"})
    unrated = [x for x in labs if x not in rub.rated_labels]
    if labs:
        out.append("Labels: unmarked figures are measured; " + "; ".join(
            f"({x}) = {LABEL_MEANINGS.get(x, x)}" for x in labs) + ".")
    if unrated:
        out.append(f"Only {', '.join(rub.rated_labels)} figures are rated: {', '.join(unrated)} figures are "
                   f"shown and never coloured.")
    crit = [r[c.key] for _, r in a.table.iterrows() if _ran(r["status"]) for c in a.criteria]
    out.append("A criterion takes the worst rating among its rated figures; (k of m measured) says how many "
               "of its rubric's figures this run rated.")
    if any(not cc.complete for cc in crit):
        out.append(f"With figures missing a criterion is incomplete and never {rub.ratings[0]}: "
                   "a missing figure could be anything.")
    if any(m.shown for m in cells):
        out.append("Figures marked 'shown, not rated' are context (e.g. a mitigation's effect).")
    return out


def metric_unit(a: Assessment, metric: str) -> str:
    units = {m.unit for _, r in a.table.iterrows() for c in a.criteria for m in r[c.key].cells
             if m.metric == metric and m.measured and m.unit}
    return ", ".join(sorted(units))


def rule_text(a: Assessment, metric: str) -> str:
    r = a.rubric.rule(metric)
    if r.show:
        return "shown, not rated"
    op = ">=" if r.direction == "higher" else "<="
    worse = "ci_low" if r.direction == "higher" else "ci_high"
    on = {"interval": f" on the worse end of the interval ({worse})", "value": " on the point value"}.get(
        r.on, f" on {r.on}")
    g, am, _ = a.rubric.ratings
    t = lambda x: f"{x:,.0f}" if x == int(x) and abs(x) >= 1000 else f"{x:g}"
    return f"{g} {op} {t(r.green)}, {am} {op} {t(r.amber)}{on}"


def provenance_lines(a: Assessment) -> list[str]:
    p = a.provenance
    versions = p.get("versions") or {}
    cfg = p.get("config")
    return [f"run: {p.get('run_id', 'n/a')} (created {p.get('created', 'n/a')}, command {p.get('command', 'n/a')})",
            f"commit: {p.get('commit', 'n/a')}",
            f"seed: {p.get('seed', 'n/a')}",
            "packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"rubric: {p.get('rubric', 'n/a')} (sha256 {p.get('rubric_sha256', '')})",
            *[f"with run: {e['run_id']} (command {e['command']}, commit {e['commit']}, seed {e['seed']})"
              for e in p.get("with_runs") or []],
            "config: " + json.dumps(cfg, sort_keys=True, default=str)]


def _meta_rows(a: Assessment) -> list[dict[str, str]]:
    return [{"scheme": r["scheme"], "status": r["status"], "EU category": r["eu_category"],
             "verdict to": r["verdict_to"], "trust": r["trust"] or "-"} for _, r in a.table.iterrows()]


def _ran(status: str) -> bool:
    return status in (MEASURED, MODELLED)


# -- markdown --------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return out


def to_markdown(a: Assessment, title: str | None = None) -> str:
    rub = a.rubric
    run_id = a.provenance.get("run_id", "")
    lines = [f"## {title or f'Assessment of run {run_id}'}", ""]
    legend = ", ".join(f"{EMOJI.get(k, '')} {k} = {rub.label(k)}" for k in (*rub.ratings, rub.not_measured))
    lines += [f"Ratings: {legend}. " + " ".join(legend_sentences(a))
              + " Figures tables list the schemes this run measured; the others appear in the overview only.", ""]
    header = ["scheme", "status", "EU category", "verdict to", "trust"] + [c.title for c in a.criteria]
    rows = []
    for meta, (_, r) in zip(_meta_rows(a), a.table.iterrows()):
        crit = [f"{EMOJI.get(r[c.key].rating, '')} {criterion_text(r[c.key], rub)}" if _ran(r["status"]) else "-"
                for c in a.criteria]
        rows.append(list(meta.values()) + crit)
    lines += _md_table(header, rows) + [""]
    for c in a.criteria:
        lines += [f"### {c.title}: figures", ""]
        header = ["scheme", "rating"] + [f"{m} ({metric_unit(a, m) or '-'})" for m in c.metrics]
        rows = []
        for _, r in a.table.iterrows():
            cc: CriterionCell = r[c.key]
            if _ran(r["status"]):
                rows.append([r["scheme"], f"{EMOJI.get(cc.rating, '')} {cc.rating}"]
                            + [(f"{EMOJI.get(m.rating, '')} " if not m.shown else "") + full_cell_text(m, rub)
                               for m in cc.cells])
        lines += _md_table(header, rows) + [""]
    lines += ["### Rating rules", ""]
    rows = [[c.title, r.metric, rule_text(a, r.metric)] for c in a.criteria for r in c.rules]
    rows.append(["(all)", "(labels)", f"rated only when labelled {', '.join(rub.rated_labels)}"])
    lines += _md_table(["criterion", "metric", "rule"], rows) + [""]
    lines += ["### Provenance", ""] + [f"- {x}" for x in provenance_lines(a)] + [""]
    return "\n".join(lines)


# -- long forms --------------------------------------------------------------------------------
def long_frame(a: Assessment) -> pd.DataFrame:
    d = a.long()
    d.insert(0, "run_id", a.provenance.get("run_id"))
    d["n"] = d["n"].astype("Int64")
    return d


def to_csv(a: Assessment) -> str:
    return long_frame(a).to_csv(index=False)


def _clean(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def to_json(a: Assessment) -> str:
    rows = [{k: _clean(v) for k, v in r.items()} for r in long_frame(a).to_dict(orient="records")]
    rubric = {"rules": [{"criterion": c.key, "title": c.title, "metric": r.metric, "shown_not_rated": r.show,
                         "direction": None if r.show else r.direction, "green": None if r.show else r.green,
                         "amber": None if r.show else r.amber, "on": None if r.show else r.on,
                         "not_applicable": r.not_applicable} for c in a.criteria for r in c.rules],
              "rated_labels": list(a.rubric.rated_labels), "ratings": list(a.rubric.ratings),
              "not_measured": a.rubric.not_measured, "how_to_read": legend_sentences(a)}
    raw = [{k: _clean(v) for k, v in r.items()} for r in a.measurements.to_dict(orient="records")]
    from e2eebench.evaluation.run.strictjson import dumps
    return dumps({"provenance": a.provenance, "rubric": rubric, "assessment": rows, "measurements": raw}, indent=2)


# -- LaTeX -------------------------------------------------------------------------------------
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def _tex_metric(name: str) -> str:
    return tex_escape(name).replace(r"\_", r"\_\allowbreak{}")


def _tex_colour(rating: str) -> str:
    return "rating" + "".join(ch for ch in rating if ch.isalpha())


def to_latex(a: Assessment) -> str:
    """A standalone document: booktabs rules, colortbl cell colours, landscape A4."""
    rub = a.rubric
    out = [r"\documentclass[10pt]{article}",
           r"\usepackage[a4paper,landscape,margin=1.2cm]{geometry}",
           r"\usepackage[table]{xcolor}", r"\usepackage{booktabs}", r"\usepackage{colortbl}",
           r"\usepackage{array}", r"\usepackage[T1]{fontenc}", r"\usepackage{lmodern}"]
    for k in (*rub.ratings, rub.not_measured):
        out.append(rf"\definecolor{{{_tex_colour(k)}}}{{HTML}}{{{rub.colour(k).lstrip('#').upper()}}}")
    out += [r"\newcolumntype{P}[1]{>{\raggedright\arraybackslash}p{#1}}", r"\begin{document}",
            rf"\section*{{Assessment of run {tex_escape(a.provenance.get('run_id', ''))}}}",
            tex_escape("Ratings: " + ", ".join(f"{k} = {rub.label(k)}" for k in (*rub.ratings, rub.not_measured))
                       + ". " + " ".join(legend_sentences(a))) + r"\par"]
    # overview
    ncrit = len(a.criteria)
    out += [r"\begin{table}[h]\centering\footnotesize", r"\caption{Ratings per criterion}",
            r"\begin{tabular}{P{2.8cm}P{2.2cm}P{2.2cm}P{2.6cm}P{4.2cm}" + "P{1.8cm}" * ncrit + "}", r"\toprule",
            " & ".join(["Scheme", "Status", "EU category", "Verdict to", "Trust"]
                       + [tex_escape(c.title) for c in a.criteria]) + r" \\", r"\midrule"]
    for meta, (_, r) in zip(_meta_rows(a), a.table.iterrows()):
        cells = [tex_escape(v) for v in meta.values()]
        for c in a.criteria:
            cc = r[c.key]
            cells.append(rf"\cellcolor{{{_tex_colour(cc.rating)}}}{tex_escape(criterion_text(cc, rub))}"
                         if _ran(r["status"]) else "--")
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    for c in a.criteria:
        k = len(c.rules)
        w = max(1.5, min(2.6, 20.0 / k))
        out += [r"\begin{table}[h]\centering\footnotesize", rf"\caption{{{tex_escape(c.title)}: figures}}",
                r"\begin{tabular}{P{2.8cm}P{1.6cm}" + f"P{{{w:.1f}cm}}" * k + "}", r"\toprule",
                " & ".join(["Scheme", "Rating"] + [_tex_metric(m) for m in c.metrics]) + r" \\",
                " & ".join(["", ""] + [tex_escape(metric_unit(a, m) or "-") for m in c.metrics]) + r" \\",
                r"\midrule"]
        for _, r in a.table.iterrows():
            cc = r[c.key]
            if _ran(r["status"]):
                cells = [tex_escape(r["scheme"]), rf"\cellcolor{{{_tex_colour(cc.rating)}}}{tex_escape(cc.rating)}"]
                cells += [rf"\cellcolor{{{_tex_colour(m.rating)}}}{tex_escape(value_text(m))}"
                          + (rf"\newline {{\scriptsize {tex_escape(interval_text(m))}}}" if interval_text(m) else "")
                          + (rf"\newline {{\scriptsize\itshape {tex_escape(note_text(m, rub))}}}" if note_text(m, rub) else "")
                          for m in cc.cells]
            else:
                continue
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    out += [r"\clearpage", r"\subsection*{Rating rules}", r"\begin{tabular}{lll}", r"\toprule",
            r"Criterion & Metric & Rule \\", r"\midrule"]
    out += [f"{tex_escape(c.title)} & {tex_escape(r.metric)} & {tex_escape(rule_text(a, r.metric))} \\\\"
            for c in a.criteria for r in c.rules]
    out += [r"\bottomrule", r"\end{tabular}", r"\subsection*{Provenance}", r"{\scriptsize"]
    out += [r"\noindent " + tex_escape(x) + r"\par" for x in provenance_lines(a)]
    out += ["}", r"\end{document}", ""]
    return "\n".join(out)


# -- XLSX --------------------------------------------------------------------------------------
def to_xlsx(a: Assessment) -> bytes:
    """Workbook: Overview, one sheet per criterion (units row, frozen header), Long, Rules, Provenance."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    rub = a.rubric
    fill = {k: PatternFill("solid", fgColor=rub.colour(k).lstrip("#").upper())
            for k in (*rub.ratings, rub.not_measured)}
    bold = Font(bold=True)
    wb = Workbook()
    ws = wb.active
    ws.title = "Overview"
    head = ["scheme", "status", "EU category", "verdict to", "trust"] + [c.title for c in a.criteria]
    ws.append(head)
    for meta, (_, r) in zip(_meta_rows(a), a.table.iterrows()):
        ws.append(list(meta.values()) + [criterion_text(r[c.key], rub) if _ran(r["status"]) else "-"
                                         for c in a.criteria])
        if _ran(r["status"]):
            for j, c in enumerate(a.criteria):
                ws.cell(ws.max_row, 6 + j).fill = fill[r[c.key].rating]
    for cell in ws[1]:
        cell.font = bold
    ws.freeze_panes = "B2"
    for j, w in enumerate([22, 18, 20, 24, 40] + [16] * len(a.criteria), start=1):
        ws.column_dimensions[get_column_letter(j)].width = w

    fields = ("value", "ci_low", "ci_high", "n", "label")
    w = len(fields)
    from openpyxl.comments import Comment
    for c in a.criteria:
        ws = wb.create_sheet(c.title[:31].replace("/", " "))
        row1, row2, row3 = ["scheme", "status", "rating"], ["", "", ""], ["", "", ""]
        for m in c.metrics:
            row1 += [m] + [""] * (w - 1)
            row2 += [f"unit: {metric_unit(a, m) or '-'}"] + [""] * (w - 1)
            row3 += list(fields)
        for row in (row1, row2, row3):
            ws.append(row)
        for i in range(len(c.metrics)):
            col = 4 + w * i
            ws.merge_cells(start_row=1, start_column=col, end_row=1, end_column=col + w - 1)
            ws.merge_cells(start_row=2, start_column=col, end_row=2, end_column=col + w - 1)
        for rr in (1, 2, 3):
            for cell in ws[rr]:
                cell.font = bold
                cell.alignment = Alignment(horizontal="center")
        for _, r in a.table[a.table.status.map(_ran)].iterrows():
            cc: CriterionCell = r[c.key]
            vals: list[Any] = [r["scheme"], r["status"], cc.rating if _ran(r["status"]) else "-"]
            for m in cc.cells:
                if m.measured:
                    vals += [m.value if m.value is not None else (m.text or "no value"), m.ci_low, m.ci_high, m.n,
                             m.label]
                else:
                    vals += ["not measured" if _ran(r["status"]) else "-", None, None, None, "not measured"]
            ws.append(vals)
            if _ran(r["status"]):
                ws.cell(ws.max_row, 3).fill = fill[cc.rating]
                ws.cell(ws.max_row, 3).comment = Comment(criterion_text(cc, rub), "e2eebench")
                for i, m in enumerate(cc.cells):
                    for k in range(w):
                        ws.cell(ws.max_row, 4 + w * i + k).fill = fill[m.rating]
                    note = m.note if m.measured else ""
                    if note:
                        ws.cell(ws.max_row, 4 + w * i).comment = Comment(note, "e2eebench")
        ws.freeze_panes = "D4"
        ws.column_dimensions["A"].width = 22
        ws.column_dimensions["B"].width = 16
        for j in range(4, 4 + w * len(c.metrics)):
            ws.column_dimensions[get_column_letter(j)].width = 13

    ws = wb.create_sheet("Long")
    d = long_frame(a)
    ws.append(list(d.columns))
    for rec in d.itertuples(index=False):
        ws.append([_clean(v) for v in rec])
    for cell in ws[1]:
        cell.font = bold
    ws.freeze_panes = "A2"
    ws = wb.create_sheet("Rules")
    ws.append(["criterion", "metric", "direction", rub.ratings[0], rub.ratings[1], "rated on"])
    for c in a.criteria:
        for r in c.rules:
            ws.append([c.title, r.metric, "shown, not rated", None, None, None] if r.show
                      else [c.title, r.metric, r.direction, r.green, r.amber, r.on])
    ws.append([])
    for sentence in legend_sentences(a):
        ws.append([sentence])
    for k in (*rub.ratings, rub.not_measured):
        ws.append([])
        ws.append([k, rub.label(k)])
        ws.cell(ws.max_row, 1).fill = fill[k]
    ws = wb.create_sheet("Provenance")
    for line in provenance_lines(a):
        key, _, val = line.partition(": ")
        ws.append([key, val])
    ws.column_dimensions["A"].width = 12
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# -- HTML --------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;font-size:14px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0 16px 0}
th,td{border:1px solid #bbb;padding:4px 7px;vertical-align:top;text-align:left}
th{background:#f2f2f2;font-weight:600}
td:first-child{white-space:nowrap;font-weight:600}
td.num{text-align:right;min-width:5.5em;max-width:15em;overflow-wrap:anywhere}
th{overflow-wrap:anywhere}
td.num small{display:block;color:#333;font-size:11px}
td.num small.note{font-style:italic;max-width:16em;white-space:normal}
td.inconclusive{background-image:repeating-linear-gradient(45deg,transparent 0 7px,rgba(255,255,255,.6) 7px 12px)}
tr.unit th{font-weight:normal;font-style:italic;font-size:12px;background:#fafafa}
tr.planned td{color:#777}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #bbb}
footer{margin-top:24px;font-size:12px;color:#444}
footer code{word-break:break-all}
"""


def _h(s: Any) -> str:
    return html.escape(str(s))


def to_html(a: Assessment) -> str:
    rub = a.rubric
    bg = lambda k: f' style="background:{rub.colour(k)}"'
    run_id = a.provenance.get("run_id", "")
    o = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>Assessment of run {_h(run_id)}</title><style>{_CSS}</style></head><body>",
         f"<h1>Assessment of run {_h(run_id)}</h1>", '<p class="legend">']
    o += [f"<span{bg(k)}>{_h(k)}: {_h(rub.label(k))}</span>" for k in (*rub.ratings, rub.not_measured)]
    o += ["</p><p class=\"rules-text\">" + _h(" ".join(legend_sentences(a))) + " Rules are listed below the tables.</p>",
          '<table class="overview"><thead><tr>']
    o += [f"<th>{_h(x)}</th>" for x in ["scheme", "status", "EU category", "verdict to", "trust"]]
    o += [f"<th>{_h(c.title)}</th>" for c in a.criteria] + ["</tr></thead><tbody>"]
    for meta, (_, r) in zip(_meta_rows(a), a.table.iterrows()):
        ran = _ran(r["status"])
        o.append("<tr>" if ran else '<tr class="planned">')
        o += [f"<td>{_h(v)}</td>" for v in meta.values()]
        for c in a.criteria:
            cc = r[c.key]
            o.append(f"<td{bg(cc.rating)}>{_h(criterion_text(cc, rub))}</td>" if ran else "<td>-</td>")
        o.append("</tr>")
    o.append("</tbody></table>")
    for c in a.criteria:
        o += [f"<h2>{_h(c.title)}: figures</h2>", f'<table class="figures" data-criterion="{_h(c.key)}"><thead><tr>',
              "<th>scheme</th><th>rating</th>"]
        o += [f'<th title="{_h(rule_text(a, m))}">{_h(m).replace("_", "_<wbr>")}</th>' for m in c.metrics]
        o += ['</tr><tr class="unit"><th></th><th></th>']
        o += [f"<th>{_h(metric_unit(a, m) or '-')}</th>" for m in c.metrics] + ["</tr></thead><tbody>"]
        for _, r in a.table.iterrows():
            cc = r[c.key]
            if not _ran(r["status"]):
                continue
            o.append(f'<tr><td>{_h(r["scheme"])}</td><td{bg(cc.rating)}>{_h(cc.rating)}</td>')
            for m in cc.cells:
                sub, note = interval_text(m), note_text(m, rub)
                tip = " ".join(x for x in (m.params, m.note, f"run {m.run_id}" if m.run_id else "") if x)
                o.append(f'<td class="num{" inconclusive" if m.inconclusive else ""}" data-scheme="{_h(r["scheme"])}"'
                         f' data-metric="{_h(m.metric)}" data-label="{_h(m.label or "not measured")}"'
                         f'{bg(m.rating)} title="{_h(tip)}">{_h(value_text(m))}'
                         + (f"<small>{_h(sub)}</small>" if sub else "")
                         + (f'<small class="note">{_h(note)}</small>' if note else "") + "</td>")
            o.append("</tr>")
        o.append("</tbody></table>")
    o += ["<h2>Rating rules</h2>", '<table class="rules"><thead><tr><th>criterion</th><th>metric</th><th>rule</th>'
          "</tr></thead><tbody>"]
    o += [f"<tr><td>{_h(c.title)}</td><td>{_h(r.metric)}</td><td>{_h(rule_text(a, r.metric))}</td></tr>"
          for c in a.criteria for r in c.rules]
    o += ["</tbody></table>", "<footer><h2>Provenance</h2><ul>"]
    o += [f"<li><code>{_h(x)}</code></li>" for x in provenance_lines(a)]
    o += ["</ul></footer></body></html>", ""]
    return "\n".join(o)


EXPORTERS: dict[str, Callable[[Assessment], str | bytes]] = {
    "md": to_markdown, "csv": to_csv, "json": to_json, "latex": to_latex, "xlsx": to_xlsx, "html": to_html}


def export_assessment(a: Assessment, fmt: str) -> str | bytes:
    from e2eebench.protocols.errors import ConfigError
    fmt = "latex" if fmt == "tex" else fmt
    if fmt not in EXPORTERS:
        raise ConfigError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    return EXPORTERS[fmt](a)
