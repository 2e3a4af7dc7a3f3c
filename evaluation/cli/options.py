"""What every command shares: the --format and --seed options, output and the progress bar."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import typer

from e2eebench.protocols.errors import ConfigError

FormatOpt = typer.Option("table", "--format", "-f", help="table, json, md or csv")
SeedOpt = typer.Option(0, "--seed", help="seed for every random choice (deterministic runs)")


def check_format(fmt: str, allowed: tuple[str, ...] = ("table", "json", "md", "csv")) -> str:
    if fmt not in allowed:
        raise ConfigError(f"unknown format {fmt!r} (choose from {', '.join(allowed)})")
    return fmt


def echo(text: str | None) -> None:
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator:
    """A Rich progress bar on stderr; yields a callback ``(task, done, total)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda *a: None
        return
    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as prog:
        def cb(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = prog.add_task(name, total=total)
            prog.update(tasks[name], completed=done, total=total)
        yield cb
