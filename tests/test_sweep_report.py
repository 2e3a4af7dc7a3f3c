"""`e2eebench report --sweep`: a sweep's cells drawn from the store against list size and
threshold, measured points apart from extrapolated ones."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from e2eebench.evaluation.api import measure_config
from e2eebench.evaluation.assess.sweep_report import COLUMNS, extrapolate, make_sweep_report
from e2eebench.evaluation.cli.app import main
from e2eebench.evaluation.run.sweep import load_sweep, run_sweep
from e2eebench.protocols.errors import InputError
from test_sweep import TINY  # the smallest run config a cell can have

GRID = """
[sweep]
profile = "quick"
schemes = ["on-device-list"]
list_sizes = [100, 400]
thresholds = ["default", 40]
seeds = [0]
""" + TINY


def stored_values(cfg):
    """A stand-in for a cell's run in the fast test: stored rows of the shape a run writes (the
    report reads only the store), values a known function of list size and threshold."""
    from e2eebench.evaluation.run.store import Measurement
    n, thr = cfg.list_size, 31 if cfg.threshold == "default" else int(cfg.threshold)
    p = {"slice": "all", "threshold": thr, "list_size": n}
    return [Measurement(cfg.schemes[0], "recall", 0.5 + thr / 100, "rate", 10, params=p),
            Measurement(cfg.schemes[0], "recall", 0.1, "rate", 1, params=p | {"slice": "per message"}),
            Measurement(cfg.schemes[0], "fpr", thr / 1000, "rate", 10, params=p),
            Measurement(cfg.schemes[0], "client_ms", 1.0, "ms", 1, params=p),
            Measurement(cfg.schemes[0], "server_ms", 0.01 * n, "ms", 1, params=p),
            Measurement(cfg.schemes[0], "device_storage_bytes", 33.0 * n, "bytes", 1, params=p),
            Measurement(cfg.schemes[0], "account_false_flag_prob", 0.1, "probability", 1, params=p,
                        label="modelled")]


@pytest.fixture(scope="module", params=["stored rows", pytest.param("real runs", marks=pytest.mark.slow)])
def swept(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    path, db = d / "grid.toml", d / "s.duckdb"
    path.write_text(GRID)
    fn = stored_values if request.param == "stored rows" else measure_config
    assert run_sweep(load_sweep(path), db, fn, scheduler=None)["done"] == 4
    return path, db, request.param


def test_power_law_extrapolation_is_exact_on_a_power_law_and_labelled():
    pts = pd.DataFrame([{"scheme": "s", "list_size": n, "threshold": 31, "hasher": "pdq", "metric": "server_ms",
                         "value": 3.0 * n ** 0.5, "seeds": 2, "label": "measured"} for n in (100, 400, 1600)]
                       + [{"scheme": "s", "list_size": 100, "threshold": 31, "hasher": "pdq", "metric": "recall",
                           "value": 0.9, "seeds": 2, "label": "measured"},
                          {"scheme": "s", "list_size": 400, "threshold": 31, "hasher": "pdq", "metric": "recall",
                           "value": 0.8, "seeds": 2, "label": "measured"}], columns=COLUMNS)
    ex = extrapolate(pts, 100_000)
    assert list(ex.list_size) == [10_000, 100_000]
    assert set(ex.metric) == {"server_ms"} and set(ex.label) == {"extrapolated"}   # recall is never fitted
    assert ex.value.tolist() == pytest.approx([3.0 * math.sqrt(n) for n in (10_000, 100_000)], rel=1e-9)
    assert extrapolate(pts[pts.list_size == 100], 100_000).empty                    # one size: no fit


def test_report_sweep_draws_the_cells_measured_apart_from_extrapolated(swept, tmp_path, capsys):
    path, db, kind = swept
    code = main(["report", "--sweep", str(path), "--db", str(db), "--out", str(tmp_path / "rep"),
                 "--extrapolate-to", "10000"])
    assert code in (0, None)
    out = capsys.readouterr().out
    assert "extrapolated to 10,000" in out
    for name in ("sweep_points.csv", "sweep_list_size.png", "sweep_threshold.png"):
        f = tmp_path / "rep" / name
        assert f.exists() and f.stat().st_size > 1000, name
    pts = pd.read_csv(tmp_path / "rep" / "sweep_points.csv")
    meas = pts[pts.label == "measured"]
    assert set(meas.list_size) == {100, 400} and len(set(meas.threshold)) == 2
    assert {"fpr", "client_ms", "server_ms", "device_storage_bytes"} <= set(meas.metric)
    ex = pts[pts.label == "extrapolated"]
    assert len(ex) and set(ex.list_size) == {1000, 10000}
    assert set(ex.metric) <= {"client_ms", "server_ms", "bytes_total", "device_storage_bytes"}
    # the device's bundle grows with the list: its extrapolation is above the largest measured point
    dev = pts[(pts.metric == "device_storage_bytes")]
    top = dev[(dev.label == "measured") & (dev.list_size == 400)].value.max()
    assert dev[(dev.label == "extrapolated") & (dev.list_size == 10000)].value.min() > top
    if kind == "stored rows":       # the values are known: the run-wide rows, exact fit
        assert sorted(meas[meas.metric == "recall"].value.round(6)) == [0.81, 0.81, 0.9, 0.9]
        assert dev[(dev.label == "extrapolated") & (dev.list_size == 10000)].value.tolist() == \
            pytest.approx([330_000.0, 330_000.0])


def test_report_sweep_without_done_cells_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    db = tmp_path / "empty.duckdb"
    with pytest.raises(InputError, match="not found"):
        make_sweep_report(path, db, tmp_path / "rep")
    run_sweep(load_sweep(path)[:0], db, measure_config, scheduler=None)    # an empty store
    assert main(["report", "--sweep", str(path), "--db", str(db), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "no cell of grid.toml is done" in err and len(err.strip().splitlines()) == 1


def test_report_sweep_with_a_comparison_option_is_refused(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    assert main(["report", "--sweep", str(path), "--quick", "--out", str(tmp_path / "rep")]) == 2
    assert "--sweep draws stored cells" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()
