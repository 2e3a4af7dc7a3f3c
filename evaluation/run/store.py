"""The results store: an embedded DuckDB file with ``runs`` (provenance) and ``measurements``.

A run and all its measurements are written in one transaction, so an interrupted or
failed write leaves nothing behind (no half-written results).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from e2eebench.protocols.errors import ConfigError, InputError

DEFAULT_DB = "e2eebench.duckdb"
LABELS = ("measured", "modelled", "extrapolated", "declared", "sampled", "bounded")
PACKAGES = ("e2eebench", "numpy", "pdqhash", "imagehash", "pillow", "cryptography", "pynacl",
            "tenseal", "openmined-psi", "pybloom-live", "duckdb", "scikit-image")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, created VARCHAR, command VARCHAR, commit VARCHAR,
    versions VARCHAR, config VARCHAR, seed BIGINT, machine VARCHAR);
CREATE TABLE IF NOT EXISTS measurements (
    run_id VARCHAR, scheme VARCHAR, params VARCHAR, metric VARCHAR, value DOUBLE,
    ci_low DOUBLE, ci_high DOUBLE, unit VARCHAR, n BIGINT, text VARCHAR, label VARCHAR);
CREATE TABLE IF NOT EXISTS sweep_cells (
    cell_key VARCHAR PRIMARY KEY, status VARCHAR, run_id VARCHAR, config VARCHAR, error VARCHAR,
    seconds DOUBLE, created VARCHAR, code VARCHAR);
ALTER TABLE sweep_cells ADD COLUMN IF NOT EXISTS code VARCHAR;
"""


@dataclass
class Measurement:
    scheme: str
    metric: str
    value: float | None
    unit: str
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    label: str = "measured"

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r} not in {LABELS}")


def git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def machine_info() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.machine(), "cpus": os.cpu_count()}


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


class ResultStore:
    def __init__(self, path: str | Path = DEFAULT_DB):
        import duckdb
        self.path = self.check_path(path)
        try:
            self.con = duckdb.connect(self.path)
        except duckdb.Error as e:
            raise InputError(f"cannot open results database {self.path}: {str(e).splitlines()[0]}") from None
        self.con.execute(SCHEMA)

    @staticmethod
    def check_path(path: str | Path) -> str:
        """The database path as text, refused up front if its folder is missing or it is a folder."""
        p = str(path)
        if p != ":memory:":
            if not Path(p).parent.is_dir():
                raise InputError(f"folder for the results database does not exist: {Path(p).parent}")
            if Path(p).is_dir():
                raise InputError(f"results database path is a folder: {p}")
        return p

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write_run(self, measurements: Iterable[Measurement], *, command: str, config: dict,
                  seed: int, run_id: str | None = None) -> str:
        rows = list(measurements)
        run_id = run_id or new_run_id()
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._insert_run(run_id, rows, command, config, seed)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return run_id

    def _insert_run(self, run_id: str, rows: list[Measurement], command: str, config: dict, seed: int) -> None:
        self.con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            run_id, datetime.now(timezone.utc).isoformat(timespec="seconds"), command, git_commit(),
            json.dumps(package_versions()), json.dumps(config, default=str, sort_keys=True), seed,
            json.dumps(machine_info())])
        if rows:
            self.con.executemany(
                "INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[run_id, m.scheme, json.dumps(m.params, default=str, sort_keys=True), m.metric,
                  None if m.value is None else float(m.value), m.ci_low, m.ci_high, m.unit, int(m.n),
                  m.text, m.label] for m in rows])

    def write_cell(self, cell_key: str, status: str, *, config: dict, seed: int,
                   measurements: Iterable[Measurement] = (), error: str | None = None,
                   seconds: float | None = None, code: str | None = None) -> str | None:
        """One sweep cell in one transaction: its run and measurements (if done) and its row in
        ``sweep_cells``. A failed cell's row is replaced when it is retried; a finished cell is
        never written twice (the key is the primary key, so a second writer's insert fails).
        ``code`` is the code version the cell ran under (part of its key)."""
        if status not in ("done", "failed"):
            raise ValueError(f"cell status {status!r}")
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute("DELETE FROM sweep_cells WHERE cell_key = ? AND status = 'failed'", [cell_key])
            run_id = None
            if status == "done":
                run_id = new_run_id()
                self._insert_run(run_id, list(measurements), "sweep", config, seed)
            self.con.execute("INSERT INTO sweep_cells (cell_key, status, run_id, config, error, seconds, created, "
                             "code) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                cell_key, status, run_id, json.dumps(config, default=str, sort_keys=True), error, seconds,
                datetime.now(timezone.utc).isoformat(timespec="seconds"), code])
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return run_id

    def cells(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Rows of ``sweep_cells`` (all, or those with the given keys)."""
        df = self.con.execute("SELECT * FROM sweep_cells ORDER BY created, cell_key").df()
        if keys is not None:
            df = df[df.cell_key.isin(set(keys))]
        return df.reset_index(drop=True)

    def resolve(self, run: str = "latest", command: str | None = None) -> str:
        if run == "latest":
            q = "SELECT run_id FROM runs" + (" WHERE command = ?" if command else "") + " ORDER BY created DESC, run_id DESC LIMIT 1"
            r = self.con.execute(q, [command] if command else []).fetchone()
            if not r:
                raise ConfigError(f"no runs stored in {self.path}")
            return r[0]
        r = self.con.execute("SELECT run_id FROM runs WHERE run_id = ?", [run]).fetchone()
        if not r:
            raise ConfigError(f"no run {run!r} in {self.path}")
        return run

    def run_info(self, run_id: str) -> dict[str, Any]:
        df = self.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
        if df.empty:
            raise ConfigError(f"no run {run_id!r} in {self.path}")
        row = df.iloc[0].to_dict()
        for k in ("versions", "config", "machine"):
            row[k] = json.loads(row[k])
        return row

    def measurements(self, run_id: str) -> pd.DataFrame:
        return self.con.execute("SELECT * FROM measurements WHERE run_id = ? ORDER BY scheme, metric, params",
                                [run_id]).df()

    def runs(self) -> pd.DataFrame:
        return self.con.execute("SELECT run_id, created, command, commit, seed FROM runs ORDER BY created").df()
