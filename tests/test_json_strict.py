"""Every ``--format json`` output is strict JSON: no NaN or Infinity, nulls say why."""
from __future__ import annotations

import math

import pytest

from e2eebench.evaluation.cli.app import main
from e2eebench.evaluation.run.strictjson import NULL_REASONS, dumps, loads_strict
from e2eebench.evaluation.run.store import Measurement, ResultStore


def test_dumps_turns_non_finite_numbers_into_nulls_with_reasons():
    import numpy as np
    text = dumps({"a": float("nan"), "b": float("inf"), "c": [1.0, float("-inf")], "d": np.float64("nan"),
                  "e": {"f": np.array([1.0, np.nan])}, "ok": 1.5})
    d = loads_strict(text)
    assert d["a"] is None and d["b"] is None and d["d"] is None and d["c"] == [1.0, None] and d["ok"] == 1.5
    assert set(d[NULL_REASONS]) == {"a", "b", "c", "d"} and "not a number" in d[NULL_REASONS]["a"]
    assert "infinity" in d[NULL_REASONS]["b"] and d["e"]["f"] == [1.0, None] and "f" in d["e"][NULL_REASONS]
    with pytest.raises(ValueError):
        loads_strict('{"x": NaN}')
    with pytest.raises(ValueError):
        loads_strict('{"x": Infinity}')


@pytest.fixture()
def db_with_nan(tmp_path):
    db = tmp_path / "s.duckdb"
    with ResultStore(db) as s:
        s.write_run([Measurement("server-side", "recall", float("nan"), "rate", 0, params={"slice": "all"}),
                     Measurement("server-side", "fpr", 0.0, "rate", 10, 0.0, 0.28),
                     Measurement("server-side", "verdict_to", None, "party", 1, text="provider", label="declared")],
                    command="test", config={"x": math.inf}, seed=0)
    return db


CASES = {
    "list": ["list", "schemes"],
    "accuracy": ["accuracy", "--hashers", "dhash", "--transforms", "identity,flip", "--n", "4", "--corpus",
                 "dead-leaves", "--size", "32", "--workers", "1", "--no-calibrate"],
    "accuracy account": ["accuracy", "account", "--fpr", "0", "--messages", "200", "--t", "1,3"],
    "bench index": ["bench", "index", "--size", "200", "--queries", "3"],
    "bench psi": ["bench", "psi", "--size", "50", "--images", "3"],
    "bench bundle": ["bench", "bundle", "--sizes", "100"],
    "attack evasion": ["attack", "evasion", "--hasher", "phash", "--n", "1", "--budget", "40"],
    "attack collision": ["attack", "collision", "--hasher", "phash", "--n", "1", "--budget", "100"],
    "attack oracle": ["attack", "oracle", "--n", "12", "--list", "4"],
    "attack dishonest-client": ["attack", "dishonest-client", "--scheme", "on-device-list"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_json_output_parses_strictly(name, capsys):
    assert main(CASES[name] + ["--format", "json"]) == 0, name
    loads_strict(capsys.readouterr().out)


def test_export_json_is_strict_and_explains_its_nulls(db_with_nan, capsys):
    assert main(["export", "--db", str(db_with_nan), "--format", "json"]) == 0
    d = loads_strict(capsys.readouterr().out)
    rec = [r for r in d["measurements"] if r["metric"] == "recall"][0]
    assert rec["value"] is None
    assert d["provenance"]["config"]["x"] is None and "x" in d["provenance"]["config"][NULL_REASONS]
