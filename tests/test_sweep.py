"""Sweeps: the grid, resume, failed cells, and fault tests — the driver or a Dask worker killed
with SIGKILL mid-cell, the sweep restarted, every cell present exactly once with the untimed
values of an uninterrupted sweep."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2eebench.evaluation.api import measure_config
from e2eebench.evaluation.run.store import ResultStore
from e2eebench.evaluation.run.sweep import load_sweep, run_sweep, status
from e2eebench.protocols.errors import ConfigError, UnknownNameError

TINY = """
[run]
n_known = 1
n_benign = 4
image_size = 64

[workload]
n_accounts = 3
days = 1
"""


def grid_file(tmp_path: Path, schemes=("server-side", "on-device-list"), sizes=(100, 200, 400),
              seeds=(0, 1), name="grid.toml") -> Path:
    p = tmp_path / name
    p.write_text(f"[sweep]\nprofile = \"quick\"\nschemes = {json.dumps(list(schemes))}\n"
                 f"list_sizes = {json.dumps(list(sizes))}\nseeds = {json.dumps(list(seeds))}\n" + TINY)
    return p


def untimed(db: Path) -> dict[str, list]:
    """Per cell key: its measurements without what was timed (times are what was spent)."""
    out = {}
    with ResultStore(db) as s:
        cells = s.cells()
        for r in cells.itertuples():
            df = s.measurements(r.run_id)
            keep = df[~df.unit.isin(["ms", "s", "cores", "CPU hours"]) & ~df.unit.str.contains("/s")]
            out[r.cell_key] = sorted(zip(keep.scheme, keep.metric, keep.params, keep.value.round(12).astype(str),
                                         keep.n))
    return out


def counts(db: Path) -> tuple[int, int, int, int]:
    """(cell rows, distinct cell keys, sweep runs, runs without a cell row)."""
    with ResultStore(db) as s:
        c = s.con
        return (c.execute("SELECT count(*) FROM sweep_cells").fetchone()[0],
                c.execute("SELECT count(DISTINCT cell_key) FROM sweep_cells").fetchone()[0],
                c.execute("SELECT count(*) FROM runs WHERE command = 'sweep'").fetchone()[0],
                c.execute("SELECT count(*) FROM runs r WHERE command = 'sweep' AND NOT EXISTS "
                          "(SELECT 1 FROM sweep_cells s WHERE s.run_id = r.run_id)").fetchone()[0])


def start_sweep(path: Path, db: Path, scheduler: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("e2eebench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "e2eebench.evaluation.cli"]
    return subprocess.Popen(cmd + ["sweep", str(path), "--db", str(db), "--scheduler", scheduler, "--format", "csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_done(proc: subprocess.Popen, n: int, timeout: float = 600) -> None:
    """Read the sweep's log until ``n`` cells are stored (one line per stored cell)."""
    t0 = time.time()
    for line in proc.stderr:
        if line.startswith("sweep:") and int(line.split()[1]) >= n:
            return
        assert time.time() - t0 < timeout, "sweep too slow"
    raise AssertionError(f"sweep ended before {n} cells: {proc.wait()}")


def finish(proc: subprocess.Popen) -> None:
    """Clean up what a killed driver leaves (its cluster's processes, in its session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# -- the grid ------------------------------------------------------------------------------------
def test_grid_has_every_cell_once_with_stable_keys(tmp_path):
    cells = load_sweep(grid_file(tmp_path))
    assert len(cells) == 12 and len({c.key for c in cells}) == 12
    assert {(c.label["scheme"], c.label["list_size"], c.label["seed"]) for c in cells} == {
        (s, n, k) for s in ("server-side", "on-device-list") for n in (100, 200, 400) for k in (0, 1)}
    assert [c.key for c in load_sweep(grid_file(tmp_path, name="again.toml"))] == [c.key for c in cells]
    assert all(c.config.n_known == 1 and c.config.workload.n_accounts == 3 for c in cells)


@pytest.mark.parametrize("text, needle", [
    ("[run]\nseed = 1\n", "[sweep]"),
    ("[sweep]\nnosuch = [1]\n", "sweep.nosuch"),
    ("[sweep]\nseeds = []\n", "sweep.seeds"),
    ("[sweep]\nseeds = [1, 1]\n", "repeats"),
    ("[sweep]\nseeds = [-1]\n", "run.seed"),
    ("[sweep]\nschemes = [\"nosuch\"]\n", "unknown scheme"),
    ("[sweep]\nprofile = \"nosuch\"\n", "built-in config"),
    ("[sweep]\nthresholds = [1.5]\n", "thresholds"),
])
def test_bad_sweep_files_are_config_errors(tmp_path, text, needle):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises((ConfigError, UnknownNameError), match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(p)


def test_failed_cell_is_recorded_the_sweep_goes_on_and_resume_retries_it(tmp_path):
    cells = load_sweep(grid_file(tmp_path, sizes=(100,), seeds=(0,)))
    db = tmp_path / "s.duckdb"
    calls = []

    def flaky(cfg):
        calls.append(cfg.schemes[0])
        if cfg.schemes[0] == "server-side" and calls.count("server-side") == 1:
            raise RuntimeError("disk on fire")
        return measure_config(cfg)

    c = run_sweep(cells, db, flaky, scheduler=None)
    assert c == {"done": 1, "failed": 1, "total": 2}
    st = {r["scheme"]: r for r in status(cells, db)}
    assert st["server-side"]["status"] == "failed" and "disk on fire" in st["server-side"]["error"]
    assert st["on-device-list"]["status"] == "done"
    c = run_sweep(cells, db, flaky, scheduler=None)          # resume: only the failed cell runs again
    assert c == {"done": 2, "failed": 0, "total": 2} and calls == ["server-side", "on-device-list", "server-side"]
    assert counts(db) == (2, 2, 2, 0)
    assert run_sweep(cells, db, flaky, scheduler=None)["done"] == 2 and len(calls) == 3   # nothing to do


# -- code version ------------------------------------------------------------------------------
def test_source_digest_follows_the_source_not_caches_or_order(tmp_path):
    from e2eebench.evaluation.run.sweep import source_digest
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "x.py").write_text("X = 1\n")
    (a / "sub" / "c.toml").write_text("k = 1\n")
    d0 = source_digest({"pkg": a})
    (a / "__pycache__").mkdir()
    (a / "__pycache__" / "x.cpython-311.py").write_text("cache")
    (a / "notes.md").write_text("not source")
    assert source_digest({"pkg": a}) == d0                     # caches and non-source files: the same
    (a / "x.py").write_text("X = 2\n")
    assert source_digest({"pkg": a}) != d0                     # an edit changes it
    (a / "x.py").write_text("X = 1\n")
    assert source_digest({"pkg": a}) == d0
    (a / "sub" / "c.toml").rename(a / "c.toml")
    assert source_digest({"pkg": a}) != d0                     # a moved file changes it
    (a / "c.toml").rename(a / "sub" / "c.toml")
    (a / "render").mkdir()
    (a / "render" / "fig.py").write_text("Y = 1\n")
    assert source_digest({"pkg": a}, ["pkg/render"]) == d0     # a skipped folder: not cell code
    assert source_digest({"pkg": a}) != d0


def test_code_version_names_the_package_and_the_source():
    from e2eebench.evaluation.run import sweep
    v = sweep.code_version()
    assert v.startswith("0.") and "+src." in v and len(v.split("+src.")[1]) == 16
    cfg = load_sweep_text_cell()
    assert sweep.cell_key(cfg, "1+src.a") != sweep.cell_key(cfg, "1+src.b")
    assert sweep.cell_key(cfg) == sweep.cell_key(cfg, v)


def load_sweep_text_cell():
    from e2eebench.evaluation.run.sweep import sweep_cells
    return sweep_cells({"sweep": {"schemes": ["server-side"]}})[0].config


def test_cells_stored_under_another_code_version_are_rerun_and_status_says_so(tmp_path, monkeypatch, capsys):
    from e2eebench.evaluation.cli.app import main
    from e2eebench.evaluation.run import sweep
    path = grid_file(tmp_path, sizes=(100,), seeds=(0,))
    db = tmp_path / "s.duckdb"
    calls = []

    def fn(cfg):
        calls.append(cfg.schemes[0])
        return []

    monkeypatch.setattr(sweep, "code_version", lambda: "0.1.0+src.old")
    old = load_sweep(path)
    assert run_sweep(old, db, fn, scheduler=None)["done"] == 2 and len(calls) == 2
    assert sweep.stale_note(status(old, db)) is None
    with ResultStore(db) as s:
        assert set(s.cells().code) == {"0.1.0+src.old"}
    monkeypatch.setattr(sweep, "code_version", lambda: "0.1.0+src.new")
    new = load_sweep(path)
    assert {c.key for c in new}.isdisjoint(c.key for c in old)
    rows = status(new, db)
    assert [r["status"] for r in rows] == ["pending", "pending"]
    assert [r["other_code"] for r in rows] == ["0.1.0+src.old"] * 2
    note = sweep.stale_note(rows)
    assert "2 cell(s)" in note and "0.1.0+src.old" in note and "0.1.0+src.new" in note
    assert main(["sweep", "--status", str(path), "--db", str(db), "--format", "csv"]) in (0, None)
    err = capsys.readouterr().err
    assert "another code version (0.1.0+src.old" in err
    assert run_sweep(new, db, fn, scheduler=None)["done"] == 2 and len(calls) == 4   # rerun, not reused
    assert sweep.stale_note(status(new, db)) is None
    assert counts(db)[:2] == (4, 4)          # both versions kept, each cell once per version


# -- fault tests ---------------------------------------------------------------------------------
def test_driver_killed_mid_cell_resumes_to_every_cell_once(tmp_path):
    """Reduced profile (4 cells, in-process): SIGKILL the driver while a cell is in flight."""
    path = grid_file(tmp_path, sizes=(100,))
    ref = tmp_path / "ref.duckdb"
    run_sweep(load_sweep(path), ref, measure_config, scheduler=None)
    db = tmp_path / "s.duckdb"
    proc = start_sweep(path, db, "none")
    wait_for_done(proc, 1)
    time.sleep(0.5)                        # inside the next cell
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    assert proc.returncode == -signal.SIGKILL
    rows, keys, runs, orphans = counts(db)
    assert 1 <= rows < 4 and rows == keys == runs and orphans == 0
    proc = start_sweep(path, db, "none")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-1500:]
    assert counts(db) == (4, 4, 4, 0)
    assert untimed(db) == untimed(ref)


@pytest.fixture(scope="module")
def reference_12(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref12")
    path = grid_file(tmp)
    db = tmp / "ref.duckdb"
    run_sweep(load_sweep(path), db, measure_config, scheduler=None)
    return path, untimed(db)


@pytest.mark.slow
def test_grid_of_12_on_local_cluster_killed_and_resumed(tmp_path, reference_12):
    """The issue's case: 2 schemes x 3 list sizes x 2 seeds on a 2-worker LocalCluster, the
    driver killed with SIGKILL mid-sweep, resumed: 12 cells, each once, the same untimed values."""
    path, ref = reference_12
    db = tmp_path / "s.duckdb"
    proc = start_sweep(path, db, "local")
    wait_for_done(proc, 4)
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    rows, keys, runs, orphans = counts(db)
    assert 4 <= rows < 12 and rows == keys == runs and orphans == 0
    proc = start_sweep(path, db, "local")
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-1500:]
    assert "12 cells, 12 done, 0 failed, 0 remaining" in err
    assert counts(db) == (12, 12, 12, 0)
    assert untimed(db) == ref


@pytest.mark.slow
def test_dask_worker_killed_mid_cell(tmp_path, reference_12):
    """A worker of the LocalCluster killed with SIGKILL while it runs a cell: Dask reruns the
    task elsewhere; the sweep ends with every cell once and the same untimed values."""
    import psutil
    path, ref = reference_12
    db = tmp_path / "s.duckdb"
    proc = start_sweep(path, db, "local")
    try:
        wait_for_done(proc, 2)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline()) or "forkserver" in " ".join(p.cmdline())]
        busy = [p for p in workers if p.cpu_percent(interval=0.3) > 5] or workers
        assert busy, "no worker process found"
        busy[-1].send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
    finally:
        finish(proc)
    assert proc.returncode == 0, err[-1500:]
    assert counts(db) == (12, 12, 12, 0)
    assert untimed(db) == ref
