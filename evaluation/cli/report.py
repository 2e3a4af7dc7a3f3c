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
                   with_runs: Optional[List[str]] = typer.Option(None, "--with", help="another stored run of --db to join (accuracy, attack, bench runs); repeatable"),
                   study: Optional[str] = typer.Option(None, "--study", help="a study TOML (or built-in 'quick', 'standard'): run its comparison and steps, then assess them together"),
                   sweep: Optional[Path] = typer.Option(None, "--sweep", help="a sweep file: draw its done cells from --db "
                                                        "(default e2eebench.duckdb) against list size and threshold"),
                   extrapolate_to: Optional[int] = typer.Option(None, "--extrapolate-to", min=1,
                                                                help="with --sweep: list size to extrapolate cost to "
                                                                     "(default 10x the grid's largest)")) -> None:
        """Write the assessment tables (md, csv, json, tex, xlsx, html), PNG figures and summary.md;
        with --sweep, a sweep's figures and its table of points."""
        from e2eebench.evaluation.cli.options import echo, progress_bar
        if sweep is not None:
            from e2eebench.evaluation.assess.sweep_report import make_sweep_report
            if study is not None or quick or run is not None:
                from e2eebench.protocols.errors import ConfigError
                raise ConfigError("--sweep draws stored cells: give it without --study, --quick or --run")
            srep = make_sweep_report(sweep, db or Path("e2eebench.duckdb"), out, extrapolate_to)
            for p in [srep.table, *srep.figures]:
                echo(f"wrote {p}")
            for note in srep.notes:
                echo(f"note: {note}")
            return
        from e2eebench.evaluation.assess.report import make_report
        from e2eebench.protocols.errors import ConfigError
        names = None
        if schemes:
            from e2eebench.protocols.registry import parse_scheme_list
            names = parse_scheme_list(schemes)
        joined = list(with_runs or [])
        notes: list[str] = []
        if study is not None:
            from e2eebench.evaluation.cli.study import load_study, run_study
            if quick or run is not None or schemes:
                raise ConfigError("--study runs its own comparison: give it without --quick, --run or --schemes")
            if rubric is not None:
                from e2eebench.evaluation.assess.rubric import load_rubric
                load_rubric(rubric)  # fail before any work
            plan = load_study(study, app)
            if out.exists() and not out.is_dir():
                from e2eebench.protocols.errors import InputError
                raise InputError(f"not a folder: {out}")
            out.mkdir(parents=True, exist_ok=True)
            db = db if db is not None else out / "e2eebench.duckdb"
            res = run_study(app, plan, db, out)
            run = res.comparison_run
            joined = [*res.step_runs.values(), *joined]
            notes += [f"study {plan.path.name}: comparison run {run}; "
                      + "; ".join(f"{k} run {v}" for k, v in res.step_runs.items())
                      + (f" (stored runs reused: {', '.join(res.reused)})" if res.reused else "")]
        with progress_bar() as cb:
            rep = make_report(out, quick=quick, run=run, db=db, rubric=rubric, schemes=names, progress=cb,
                              with_runs=joined)
        rep.notes = notes + rep.notes
        echo(f"run {rep.run_id} ({rep.db})")
        for p in [*rep.tables.values(), *([rep.picture] if rep.picture else []), *rep.figures, rep.summary]:
            echo(f"wrote {p}")
        for note in rep.notes:
            echo(f"note: {note}")
