"""The report: run (or read) a comparison, then write every table format, the figures and an annex.

``make_report`` is what ``e2eebench report`` calls; everything it writes comes from one
stored run and one rubric, both named in the provenance of every file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from e2eebench.evaluation.assess.assessment import MEASURED, MODELLED, Assessment, assess_run
from e2eebench.evaluation.assess.formats import SUFFIX, export_assessment, provenance_lines, to_markdown
from e2eebench.evaluation.assess.exporting import write_atomic
from e2eebench.protocols.errors import ConfigError, InputError

TABLE_FORMATS = ("md", "csv", "json", "latex", "xlsx", "html")


@dataclass
class Report:
    out_dir: Path
    run_id: str
    db: str
    assessment: Assessment
    tables: dict[str, Path] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    summary: Path | None = None
    picture: Path | None = None          # the HTML table as Chromium renders it (assessment.html.png)
    notes: list[str] = field(default_factory=list)


def _ran(a: Assessment) -> list[str]:
    return [r["scheme"] for _, r in a.table.iterrows() if r["status"] in (MEASURED, MODELLED)]


def summary_markdown(a: Assessment, figures: list[Path], tables: dict[str, Path]) -> str:
    """The annex: what was run, the ratings, what each criterion says, figures, method, provenance."""
    p = a.provenance
    cfg = p.get("config") or {}
    ran = _ran(a)
    rub = a.rubric
    lines = ["# Annex: assessment of detection schemes for known images in E2EE messaging",
             "", f"Run `{p.get('run_id')}` (commit `{p.get('commit')}`, seed {p.get('seed')}). "
             f"Corpus `{cfg.get('corpus')}`, hasher `{cfg.get('hasher')}` at threshold `{cfg.get('threshold')}`, "
             f"{cfg.get('n_known')} known and {cfg.get('n_benign')} benign images, profile `{cfg.get('profile')}`.",
             "", "Every figure below is a stored measurement with its 95% interval and sample size; every rating "
             "is a threshold from the rubric (listed at the end). Schemes marked *not implemented* or "
             "*not in this run* carry no numbers.", ""]
    lines += ["## Findings by criterion", ""]
    for c in a.criteria:
        by: dict[str, list[str]] = {}
        for _, r in a.table.iterrows():
            if r["scheme"] in ran:
                by.setdefault(r[c.key].rating, []).append(r["scheme"])
        parts = [f"{rub.label(k)} ({k}): {', '.join(by[k])}" for k in (*rub.ratings, rub.not_measured) if by.get(k)]
        missing = sorted({m.metric for _, r in a.table.iterrows() if r["scheme"] in ran
                          for m in r[c.key].cells if not m.measured})
        lines.append(f"- **{c.title}**: " + ("; ".join(parts) if parts else "no scheme ran") + "."
                     + (f" Not measured in this run: {', '.join(missing)}." if missing else ""))
    absent = [(r["scheme"], r["status"]) for _, r in a.table.iterrows() if r["scheme"] not in ran]
    if absent:
        lines += ["", "Not assessed here: " + ", ".join(f"`{s}` ({st})" for s, st in absent) + "."]
    lines += ["", "## Figures", ""]
    captions = {"recall_vs_fpr": "Recall against false positive rate, one point per scheme.",
                "cost_vs_list_size": "Cost against the size of the known list.",
                "privacy_vs_effectiveness": "What the provider learns per benign image against recall.",
                "transform_recall_heatmap": "Recall per transform family of the known images sent."}
    for f in figures:
        lines += [f"![{captions.get(f.stem, f.stem)}]({f.name})", "", f"*{captions.get(f.stem, f.stem)}*", ""]
    lines += ["## Tables", "", "The same table in every format: "
              + ", ".join(f"[{k}]({v.name})" for k, v in tables.items()) + ".", ""]
    md = to_markdown(a, title="Assessment table")
    lines += ["#" + ln if ln.startswith("##") else ln for ln in md.splitlines()]
    return "\n".join(lines) + "\n"


def make_report(out_dir: str | Path, *, quick: bool = False, run: str | None = None, db: str | Path | None = None,
                rubric: str | Path | None = None, schemes: list[str] | None = None,
                progress: Callable[[str, int, int], None] | None = None,
                with_runs: list[str] | None = None) -> Report:
    """Run the quick comparison (or read ``run`` from ``db``) and write tables, figures and summary.md."""
    from e2eebench.evaluation.assess.figures import write_figures
    out = Path(out_dir)
    if run is None and not quick:
        raise ConfigError("give --quick to run the embedded comparison, or --run ID to read a stored one")
    if run is not None and quick:
        raise ConfigError("give either --quick or --run, not both")
    if out.exists() and not out.is_dir():
        raise InputError(f"not a folder: {out}")
    if rubric is not None:
        from e2eebench.evaluation.assess.rubric import load_rubric
        load_rubric(rubric)  # fail before any work
    if run is not None:
        if db is None or not Path(db).exists():
            raise InputError(f"no results database at {db} (give --db FILE)")
        db_path = str(db)
    else:
        from e2eebench.evaluation.api import quick_config, run as run_comparison
        out.mkdir(parents=True, exist_ok=True)
        db_path = str(db) if db is not None else str(out / "e2eebench.duckdb")
        cfg = quick_config(**({"schemes": schemes} if schemes else {}))
        run = run_comparison(cfg, db=db_path, progress=progress, command="report").run_id
    out.mkdir(parents=True, exist_ok=True)
    a = assess_run(db_path, run, None if rubric is None else str(rubric), with_runs=with_runs or ())
    rep = Report(out, a.provenance["run_id"], db_path, a)
    for fmt in TABLE_FORMATS:
        path = out / f"assessment.{SUFFIX[fmt]}"
        write_atomic(path, export_assessment(a, fmt))
        rep.tables[fmt] = path
    rep.figures = write_figures(a, out)
    rep.picture = _picture(rep)
    rep.summary = out / "summary.md"
    write_atomic(rep.summary, summary_markdown(a, rep.figures, rep.tables))
    return rep


def _picture(rep: Report) -> Path | None:
    """The HTML table rendered by headless Chromium, next to it; a plain note where Chromium is absent."""
    from e2eebench.evaluation.assess.browser import BrowserMissing, render_png
    html = rep.tables["html"]
    png = html.with_name(html.name + ".png")
    try:
        lay = render_png(html, png)
    except BrowserMissing as e:
        rep.notes.append(f"no PNG of the table: {e}")
        return None
    except (RuntimeError, OSError) as e:  # a browser that fails must not lose the tables already written
        rep.notes.append(f"no PNG of the table: Chromium failed: {e}")
        return None
    if lay.overflows:
        rep.notes.append(f"the HTML table is wider than {lay.client_width} px ({lay.scroll_width} px): "
                         "the PNG is widened to hold it")
    return png


def provenance_text(rep: Report) -> str:
    return "\n".join(provenance_lines(rep.assessment))
