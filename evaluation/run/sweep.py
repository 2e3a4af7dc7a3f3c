"""Sweeps: a grid of runs (schemes x list sizes x hashers x thresholds x seeds) that resumes.

A sweep file is a run config (``[run]``, ``[workload]``, ``[schemes.NAME]``, all optional) plus
a ``[sweep]`` table whose optional lists ``schemes``, ``list_sizes``, ``hashers``, ``thresholds``
and ``seeds`` span the grid, and whose ``profile`` names the built-in config that gives every
value the file does not set (default ``quick``)::

    [sweep]
    profile = "quick"
    schemes = ["server-side", "on-device-list"]
    list_sizes = [1000, 10000, 100000]
    seeds = [0, 1]

Each cell is one scheme's run, keyed by a SHA-256 of its full configuration. Only the driver
writes to the results store, one transaction per cell (its run, its measurements and its row in
``sweep_cells``), so a sweep killed at any moment leaves finished cells whole, the cell in flight
absent, and nothing twice; the next start skips what is done and retries what failed. Cells run
in this process or as tasks on a Dask cluster (a ``LocalCluster`` of two worker processes, or a
running scheduler's address); a worker that dies mid-cell has its task rerun elsewhere by Dask.

The function that turns a cell's config into measurements is handed in (the API's
``measure_config``), so this stage imports no measurement stage.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from e2eebench.protocols.errors import ConfigError, InputError
from e2eebench.evaluation.run.config import builtin_config, check_config, config_from_dict, toml_table
from e2eebench.evaluation.data.processes import pool_usable
from e2eebench.evaluation.run.runner import RunConfig
from e2eebench.evaluation.run.store import Measurement, ResultStore

CellFn = Callable[[RunConfig], list[Measurement]]
Progress = Callable[[int, int, int], None]     # (done, failed, total)
AXES = ("schemes", "list_sizes", "hashers", "thresholds", "seeds")
MAX_CELLS = 100_000


@dataclass(frozen=True)
class Cell:
    key: str
    config: RunConfig

    @property
    def label(self) -> dict[str, Any]:
        c = self.config
        return {"scheme": c.schemes[0], "list_size": c.list_size, "hasher": c.hasher,
                "threshold": c.threshold, "seed": c.seed}


SOURCE_PACKAGES = ("protocols", "server", "clientside", "evaluation")
SOURCE_SUFFIXES = (".py", ".toml")
# the stages after the API only read and render stored cells: editing a figure changes no cell
NOT_CELL_CODE = ("evaluation/assess", "evaluation/cli")


@lru_cache(maxsize=1)
def code_version() -> str:
    """The version of the code that computes a cell: the package version and a SHA-256 over the
    source of protocols/, server/, clientside/ and evaluation/ (every .py and .toml file, by
    relative path and content, in sorted order), less evaluation/assess and evaluation/cli,
    which only read and render stored cells.

    A digest of the source rather than the git commit: it is the same for the same code however
    it was installed (a checkout, a wheel, a tarball without .git), a commit that changes only
    docs or tests keeps it, and uncommitted edits change it (a commit would read "dirty" and say
    nothing of which edits)."""
    roots = {pkg: Path(import_module(f"e2eebench.{pkg}").__file__).resolve().parent for pkg in SOURCE_PACKAGES}
    try:
        version = metadata.version("e2eebench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{version}+src.{source_digest(roots, NOT_CELL_CODE)[:16]}"


def source_digest(roots: dict[str, Path], skip: Sequence[str] = ()) -> str:
    """SHA-256 over every .py and .toml file under each root (name -> folder), by relative path
    and content in sorted order, less the folders in ``skip`` ("name/sub"); bytecode caches are
    not source."""
    h = hashlib.sha256()
    for pkg, base in sorted(roots.items()):
        files = sorted(f for f in base.rglob("*") if f.suffix in SOURCE_SUFFIXES and f.is_file()
                       and "__pycache__" not in f.relative_to(base).parts)
        for f in files:
            name = f"{pkg}/{f.relative_to(base).as_posix()}"
            if any(name.startswith(s.rstrip("/") + "/") for s in skip):
                continue
            rel = name.encode()
            data = f.read_bytes()
            h.update(len(rel).to_bytes(4, "big") + rel + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def cell_key(config: RunConfig, code: str | None = None) -> str:
    """SHA-256 of the canonical JSON of everything that determines the cell's run: its whole
    configuration and the code version, so a sweep resumed after a code change reruns its cells
    instead of mixing results of two versions."""
    blob = json.dumps({"code": code or code_version(), "config": config.to_dict()}, sort_keys=True,
                      default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def load_sweep(path: str | Path) -> list[Cell]:
    """The cells of a sweep file, in grid order; every value is checked before anything runs."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"sweep file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"sweep path is a folder, not a file: {p}") from None
    except OSError as e:
        raise InputError(f"cannot read sweep file {p}: {e.strerror or e.__class__.__name__}") from None
    raw = toml_table(data, f"sweep {p.name}")
    return sweep_cells(raw, p.name)


def sweep_cells(raw: dict[str, Any], where: str = "sweep") -> list[Cell]:
    spec = raw.get("sweep")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a sweep file needs a [sweep] table")
    for k in spec:
        if k not in AXES + ("profile",):
            raise ConfigError(f"{where}: unknown key sweep.{k} (known: profile, {', '.join(AXES)})")
    profile = spec.get("profile", "quick")
    if not isinstance(profile, str):
        raise ConfigError(f"{where}: sweep.profile must be the name of a built-in config")
    base_raw = tomllib.loads(builtin_config(profile).read_text())
    merged: dict[str, Any] = {k: dict(v) for k, v in base_raw.items()}
    for section in ("run", "workload", "schemes"):
        if section in raw:
            if not isinstance(raw[section], dict):
                raise ConfigError(f"{where}: {section} must be a [{section}] table")
            merged.setdefault(section, {}).update(raw[section])
    base = config_from_dict(merged, where)
    if not base.schemes:
        from e2eebench.protocols.registry import SCHEMES
        base = replace(base, schemes=list(SCHEMES))
    axes: dict[str, list] = {
        "schemes": spec.get("schemes", base.schemes),
        "list_sizes": spec.get("list_sizes", [base.list_size]),
        "hashers": spec.get("hashers", [base.hasher]),
        "thresholds": spec.get("thresholds", [base.threshold]),
        "seeds": spec.get("seeds", [base.seed]),
    }
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: sweep.{name} must be a non-empty list")
        if len(set(map(str, values))) != len(values):
            raise ConfigError(f"{where}: sweep.{name} repeats a value")
    n = 1
    for values in axes.values():
        n *= len(values)
    if n > MAX_CELLS:
        raise ConfigError(f"{where}: the grid has {n:,} cells; at most {MAX_CELLS:,}")
    cells = []
    # the scheme varies fastest: neighbouring cells share their prepared work (api.measure_config)
    for size, hasher, thr, seed, scheme in itertools.product(
            axes["list_sizes"], axes["hashers"], axes["thresholds"], axes["seeds"], axes["schemes"]):
        if isinstance(thr, bool) or not isinstance(thr, (str, int)):
            raise ConfigError(f"{where}: sweep.thresholds must hold 'default', 'calibrated' or integers")
        cfg = replace(base, schemes=[scheme], list_size=size, hasher=hasher, threshold=str(thr), seed=seed,
                      scheme_params={k: v for k, v in base.scheme_params.items() if k == scheme})
        check_config(cfg, f"{where} cell {scheme}/{size}/{hasher}/{thr}/{seed}")
        cells.append(Cell(cell_key(cfg), cfg))
    return cells


def _same_config(config: RunConfig) -> str:
    return json.dumps(json.loads(json.dumps(config.to_dict(), default=str)), sort_keys=True)


def status(cells: Sequence[Cell], db: str | Path) -> list[dict[str, Any]]:
    """One row per cell: its grid values, key, status (done, failed, pending), error, and for a
    pending cell stored under another code version that version (``other_code``): it is not
    reused, and runs again."""
    rows, other = {}, {}
    if Path(db).exists():
        with ResultStore(db) as store:
            stored = store.cells()
        keys = {c.key for c in cells}
        rows = {r.cell_key: r for r in stored.itertuples() if r.cell_key in keys}
        for r in stored.itertuples():
            if r.cell_key not in keys and r.status == "done":
                other[json.dumps(json.loads(r.config), sort_keys=True)] = r.code or "unrecorded"
    out = []
    for c in cells:
        r = rows.get(c.key)
        out.append(c.label | {"cell": c.key[:12], "status": r.status if r is not None else "pending",
                              "run_id": getattr(r, "run_id", None), "error": getattr(r, "error", None),
                              "other_code": None if r is not None else other.get(_same_config(c.config))})
    return out


def stale_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """One line when stored cells of this grid came from another code version, else None."""
    stale = [r for r in rows if r.get("other_code")]
    if not stale:
        return None
    versions = sorted({r["other_code"] for r in stale})
    return (f"{len(stale)} cell(s) of this grid are stored under another code version "
            f"({', '.join(versions)}; this is {code_version()}): they are not reused and run again")


def run_cell(fn: CellFn, config: RunConfig) -> tuple[list[Measurement], float]:
    """A cell's unit of work (what a cluster task runs): its measurements and wall seconds."""
    t0 = time.perf_counter()
    return fn(config), time.perf_counter() - t0


def _error_text(e: BaseException) -> str:
    first = (str(e).splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:500]


def run_sweep(cells: Sequence[Cell], db: str | Path, fn: CellFn, scheduler: str | None = "local",
              progress: Progress | None = None) -> dict[str, int]:
    """Run every cell not yet done and store each as it finishes; returns the counts.

    ``scheduler``: None runs in this process; "local" starts a two-process ``LocalCluster``; any
    other value is the address of a running Dask scheduler. ``fn`` must be importable by name
    on the workers (a module-level function)."""
    ResultStore.check_path(db)
    with ResultStore(db) as store:
        done_keys = set(store.cells([c.key for c in cells]).query("status == 'done'").cell_key)
        todo = [c for c in cells if c.key not in done_keys]
        counts = {"done": len(cells) - len(todo), "failed": 0, "total": len(cells)}

        def record(cell: Cell, result: tuple[list[Measurement], float] | None, error: str | None) -> None:
            cfg = cell.config
            if error is None:
                ms, seconds = result
                store.write_cell(cell.key, "done", config=cfg.to_dict(), seed=cfg.seed, measurements=ms,
                                 seconds=seconds, code=code_version())
                counts["done"] += 1
            else:
                store.write_cell(cell.key, "failed", config=cfg.to_dict(), seed=cfg.seed, error=error,
                                 code=code_version())
                counts["failed"] += 1
            if progress:
                progress(counts["done"], counts["failed"], counts["total"])

        if progress:
            progress(counts["done"], 0, counts["total"])
        if not todo:
            return counts
        if scheduler == "local" and not pool_usable("the sweep's cells run"):
            scheduler = None
        if scheduler is None:
            for cell in todo:
                try:
                    result = run_cell(fn, cell.config)
                except Exception as e:   # a cell that breaks is recorded; the sweep goes on
                    record(cell, None, _error_text(e))
                else:
                    record(cell, result, None)
            return counts
        _on_cluster(todo, fn, scheduler, record)
    return counts


def _on_cluster(todo: Iterable[Cell], fn: CellFn, scheduler: str, record) -> None:
    from distributed import Client, LocalCluster, as_completed
    from e2eebench.evaluation.run.scheduling import _client
    cluster = None
    if scheduler == "local":
        import logging
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        client = _client(scheduler)
    try:
        by_key = {}
        futures = []
        for cell in todo:
            # pure=False: never served from a cache; the task key names the cell
            f = client.submit(run_cell, fn, cell.config, key=f"e2eebench-cell-{cell.key}", pure=False)
            by_key[f.key] = cell
            futures.append(f)
        for f in as_completed(futures):
            cell = by_key[f.key]
            try:
                result = f.result()
            except Exception as e:   # the task's own error, or KilledWorker: the cell's error
                record(cell, None, _error_text(e))
            else:
                record(cell, result, None)
            f.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
