"""``e2eebench sweep CONFIG``: a grid of runs that resumes where it stopped; ``--status`` says
what is done."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer


@contextmanager
def sweep_progress(total_hint: int) -> Iterator:
    """A Rich bar on stderr with cells done, failed and remaining; a no-op off a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    console = Console(stderr=True)
    if not console.is_terminal:   # a log: one line each time a cell is stored
        import sys

        def line(done: int, failed: int, total: int) -> None:
            print(f"sweep: {done} done, {failed} failed, {total - done - failed} remaining",
                  file=sys.stderr, flush=True)
        yield line
        return
    with Progress(TextColumn("sweep"), BarColumn(),
                  TextColumn("{task.fields[done]} done, {task.fields[failed]} failed, "
                             "{task.fields[remaining]} remaining"),
                  TimeElapsedColumn(), console=console, transient=True) as prog:
        task = prog.add_task("sweep", total=total_hint, done=0, failed=0, remaining=total_hint)

        def cb(done: int, failed: int, total: int) -> None:
            prog.update(task, completed=done + failed, total=total, done=done, failed=failed,
                        remaining=total - done - failed)
        yield cb


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from e2eebench.evaluation.cli.options import FormatOpt, check_format, echo

    @app.command("sweep")
    def sweep_cmd(config: Path = typer.Argument(..., help="sweep TOML: a [sweep] table (and optional "
                                                "[run], [workload], [schemes.NAME])"),
                  status_only: bool = typer.Option(False, "--status", help="say what is done; run nothing"),
                  db: Path = typer.Option(Path("e2eebench.duckdb"), "--db", help="results database"),
                  scheduler: str = typer.Option("local", "--scheduler",
                                                help="'local' (a 2-process Dask LocalCluster), 'none' "
                                                     "(this process) or a Dask scheduler address"),
                  fmt: str = FormatOpt) -> None:
        """Run every cell of a grid not yet in the store (one transaction per cell); exit 1 if a
        cell failed (its error is stored and shown by --status)."""
        import pandas as pd
        from e2eebench.evaluation.api import measure_config
        from e2eebench.evaluation.run.output import render
        from e2eebench.evaluation.run.store import ResultStore
        from e2eebench.evaluation.run.sweep import load_sweep, run_sweep, stale_note, status
        check_format(fmt)
        cells = load_sweep(config)
        ResultStore.check_path(db)
        stale = stale_note(status(cells, db))
        if stale:
            import sys
            print(f"sweep {config.name}: {stale}", file=sys.stderr)
        if not status_only:
            with sweep_progress(len(cells)) as cb:
                counts = run_sweep(cells, db, measure_config, None if scheduler == "none" else scheduler, cb)
        rows = status(cells, db)
        n = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "pending")}
        title = (f"sweep {config.name}: {len(rows)} cells, {n['done']} done, {n['failed']} failed, "
                 f"{n['pending']} remaining")
        echo(render(pd.DataFrame(rows), fmt, title=title,
                    records={"cells": rows, "counts": n, "config": str(config)}))
        if fmt != "table":
            import sys
            print(title, file=sys.stderr)
        if not status_only and counts["failed"]:
            raise typer.Exit(1)
