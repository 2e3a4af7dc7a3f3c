"""The study behind the assessment: a TOML of command lines, checked before work, run into one
database, resumed from what is stored, and joined into one table whose cells name their runs."""
from __future__ import annotations

import json

import pytest

from e2eebench.evaluation.cli.app import app, main
from e2eebench.evaluation.cli.study import StudyError, load_study, run_study
from e2eebench.evaluation.run.store import ResultStore
from e2eebench.protocols.errors import ConfigError, InputError

TINY_RUN = '["run", "--quick", "--schemes", "server-side,on-device-list", "--messages", "40"]'


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["quick", "standard"])
def test_builtin_studies_load(name):
    st = load_study(name, app)
    assert st.comparison.args[0] == "run"
    assert len(st.steps) >= 3 and {s.args[0] for s in st.steps} >= {"accuracy", "attack", "bench"}


@pytest.mark.parametrize("text, needle", [
    ('[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "x"\nargs = ["bench", "index"]\n', "no --db option"),
    ('[study]\ncomparison = ["run", "--db", "x.duckdb"]\n', "set by the study"),
    ('[study]\ncomparison = ["accuracy"]\n', "must be an 'e2eebench run'"),
    ('[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "x"\nargs = ["nosuch"]\n', "unknown command 'nosuch'"),
    ('[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "x"\nargs = ["attack"]\n', "stores nothing"),
    ('[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "x"\nargs = ["report", "--quick"]\n', "cannot be a study step"),
    ('[study]\ncomparison = ["run"]\nfoo = 1\n', "unknown key(s) in [study]: foo"),
    ('[study]\n', "needs comparison"),
    ('[study]\ncomparison = []\n', "non-empty list"),
    ('[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "comparison"\nargs = ["accuracy"]\n', "not used by another"),
    ('[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "a"\n', "exactly the keys"),
    ('[run]\nseed = 1\n', "one [study] table"),
    ('comparison = ', "not valid TOML"),
])
def test_malformed_study_is_refused_before_work(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, text), app)
    assert needle in str(e.value)


def test_missing_study_file(tmp_path):
    with pytest.raises(InputError):
        load_study(tmp_path / "none.toml", app)
    with pytest.raises(ConfigError, match="no built-in study"):
        load_study("nosuch", app)


def test_cli_bad_study_is_one_line_exit_2(tmp_path, capsys):
    p = _write(tmp_path, '[study]\ncomparison = ["run"]\n[[study.steps]]\nname = "x"\nargs = ["bench", "index"]\n')
    assert main(["report", "--study", str(p), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no --db option" in err[0]
    assert not (tmp_path / "out").exists()          # refused before anything was written
    assert main(["report", "--study", "quick", "--quick", "--out", str(tmp_path / "o2")]) == 2


def test_study_runs_resumes_and_a_failed_step_keeps_the_steps_before_it(tmp_path):
    db = tmp_path / "s.duckdb"
    bad = _write(tmp_path, f'[study]\ncomparison = {TINY_RUN}\n[[study.steps]]\nname = "oracle"\n'
                           'args = ["attack", "oracle", "--scheme", "nosuch", "--n", "20"]\n')
    with pytest.raises(StudyError, match="step oracle .* failed: .*nosuch.*1 step"):
        run_study(app, load_study(bad, app), db, tmp_path / "out", log=lambda s: None)
    with ResultStore(db) as st:
        assert list(st.runs().command) == ["run"]    # the comparison is stored, the failed step is not
    good = _write(tmp_path, f'[study]\ncomparison = {TINY_RUN}\n[[study.steps]]\nname = "oracle"\n'
                            'args = ["attack", "oracle", "--scheme", "on-device-list", "--n", "50"]\n', "g.toml")
    log: list[str] = []
    res = run_study(app, load_study(good, app), db, tmp_path / "out", log=log.append)
    assert res.reused == ["comparison"] and set(res.step_runs) == {"oracle"}
    assert any("stored run" in line and "comparison" in line for line in log)
    assert (tmp_path / "out" / "steps" / "02-oracle.txt").read_text().strip()
    again = run_study(app, load_study(good, app), db, tmp_path / "out", log=lambda s: None)
    assert again.reused == ["comparison", "oracle"]
    assert again.step_runs == res.step_runs and again.comparison_run == res.comparison_run
    with ResultStore(db) as st:
        runs = st.runs()
        assert sorted(runs.command) == ["attack oracle", "run"]     # each step stored once
        assert st.con.execute("SELECT count(*) FROM study_steps").fetchone()[0] == 2


@pytest.mark.slow
def test_report_from_a_study_names_every_run_in_its_cells(tmp_path):
    p = _write(tmp_path, f'[study]\ncomparison = {TINY_RUN}\n[[study.steps]]\nname = "oracle"\n'
                         'args = ["attack", "oracle", "--scheme", "on-device-list", "--n", "50"]\n')
    out = tmp_path / "out"
    assert main(["report", "--study", str(p), "--out", str(out)]) == 0
    with ResultStore(out / "e2eebench.duckdb") as st:
        oracle = st.resolve("latest", command="attack oracle")
    table = json.loads((out / "assessment.json").read_text())
    assert oracle in json.dumps(table)              # a cell (and the provenance) names the oracle run
    assert oracle in (out / "summary.md").read_text()


def test_joined_rows_land_where_they_belong():
    """bench he's third-party rows join the registered scheme they measure; the accuracy
    benchmark's hasher rows are shown as the hasher's, not as a scheme's."""
    import pandas as pd
    from e2eebench.evaluation.assess.assessment import _scheme_meta
    from e2eebench.evaluation.cli.he import to_measurements
    row = {"engine": "he-hamming", "list_size": 100, "blocks": 1, "result_ciphertexts": 1, "n_queries": 1,
           "provider_ms": 5.0, "label": "measured"}
    names = {m.scheme for m in to_measurements([row | {"key_holder": "device"}, row | {"key_holder": "third-party"}])}
    assert names == {"he-hamming", "he-hamming-3p"}
    cos = to_measurements([row | {"engine": "he-cosine", "key_holder": "third-party"}])
    assert {m.scheme for m in cos} == {"he-cosine[third-party]"}
    meta = _scheme_meta("hasher:pdq", pd.DataFrame(columns=["scheme", "metric", "text"]))
    assert meta["family"] == "hasher" and "accuracy benchmark" in meta["eu_category"]
