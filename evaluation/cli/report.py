"""``e2eebench report``: the comparison, every table format, the figures and summary.md in one folder."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(out: Path = typer.Option(..., "--out", help="folder for tables, figures and summary.md"),
                   quick: bool = typer.Option(False, "--quick", help="run the embedded default comparison first"),
                   run: Optional[str] = typer.Option(None, "--run", help="read a stored run (id or 'latest')"),
                   db: Optional[Path] = typer.Option(None, "--db", help="results database (default with --quick: OUT/e2eebench.duckdb)"),
                   rubric: Optional[Path] = typer.Option(None, "--rubric", help="rubric TOML (default: the built-in one)"),
                   schemes: Optional[str] = typer.Option(None, "--schemes", help="comma-separated schemes (with --quick)"),
                   with_runs: Optional[List[str]] = typer.Option(None, "--with", help="another stored run of --db to join (accuracy, attack, bench runs); repeatable")) -> None:
        """Write the assessment tables (md, csv, json, tex, xlsx, html), PNG figures and summary.md."""
        from e2eebench.evaluation.cli.options import echo, progress_bar
        from e2eebench.evaluation.assess.report import make_report
        names = None
        if schemes:
            from e2eebench.protocols.registry import parse_scheme_list
            names = parse_scheme_list(schemes)
        with progress_bar() as cb:
            rep = make_report(out, quick=quick, run=run, db=db, rubric=rubric, schemes=names, progress=cb,
                              with_runs=list(with_runs or []))
        echo(f"run {rep.run_id} ({rep.db})")
        for p in [*rep.tables.values(), *([rep.picture] if rep.picture else []), *rep.figures, rep.summary]:
            echo(f"wrote {p}")
        for note in rep.notes:
            echo(f"note: {note}")
