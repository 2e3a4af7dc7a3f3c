"""Rubric loading and rating rules, and the assessment table built from a stored run."""
from __future__ import annotations

import json
import math

import pytest

from e2eebench.evaluation.assess.assessment import NOT_IMPLEMENTED, assess_run, build_assessment
from e2eebench.evaluation.assess.rubric import load_rubric, rubric_from_dict
from e2eebench.evaluation.run.stats import Z95
from e2eebench.evaluation.run.store import Measurement, ResultStore
from e2eebench.protocols.errors import ConfigError, InputError

MINI = """
[scale]
ratings = ["good", "fair", "poor"]
not_measured = "none"
[criteria.eff]
title = "Eff"
[criteria.eff.metrics.recall]
direction = "higher"
green = 0.9
amber = 0.5
[criteria.eff.metrics.fpr]
direction = "lower"
green = 0.01
amber = 0.1
on = "ci_high"
[criteria.cost.metrics.client_ms]
direction = "lower"
green = 10
amber = 100
"""


def _store(tmp_path, rows: list[Measurement]) -> str:
    db = str(tmp_path / "r.duckdb")
    with ResultStore(db) as s:
        s.write_run(rows, command="test", config={"seed": 3}, seed=3)
    return db


def test_builtin_rubric_covers_the_five_criteria_and_documented_metrics():
    r = load_rubric()
    assert [c.key for c in r.criteria] == ["effectiveness", "feasibility", "privacy", "security", "transparency"]
    for m in ("recall", "fpr", "precision", "account_false_flag_prob", "client_ms", "server_ms", "bytes_up",
              "bytes_down", "device_storage_bytes", "setup_s", "rounds", "hash_visible_to_provider",
              "provider_learns_per_benign_bits", "linkability", "inversion_ssim", "db_exposure_bits",
              "membership_oracle", "evasion_success_rate", "collision_success_rate", "payload_strip_detected",
              "payload_forge_detected", "list_auditable"):
        r.rule(m)


@pytest.mark.parametrize("x", [0.0, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0])
def test_rating_follows_thresholds(tmp_path, x):
    rub = rubric_from_dict(__import__("tomllib").loads(MINI))
    want = "good" if x >= 0.9 else "fair" if x >= 0.5 else "poor"
    got, basis = rub.rule("recall").rate(x, None, None, rub.ratings)
    assert (got, basis) == (want, x)
    # lower-is-better on the upper CI bound: the value would be good, the bound decides
    got, basis = rub.rule("fpr").rate(0.0, 0.0, x / 5, rub.ratings)
    assert got == ("good" if x / 5 <= 0.01 else "fair" if x / 5 <= 0.1 else "poor")


def test_table_from_stored_run_ratings_and_not_measured(tmp_path):
    rub = rubric_from_dict(__import__("tomllib").loads(MINI))
    rows = [Measurement("server-side", "recall", 0.6, "rate", 20, 0.39, 0.78, {"slice": "all"}),
            Measurement("server-side", "recall", 0.0, "rate", 2, 0.0, 0.66, {"slice": "crop"}),
            Measurement("server-side", "fpr", 0.0, "rate", 50, 0.0, 0.0713),
            Measurement("on-device-list", "recall", 0.95, "rate", 20, 0.76, 0.99, {"slice": "all"}),
            Measurement("on-device-list", "client_ms", 120.0, "ms", 30, 110.0, 130.0)]
    db = _store(tmp_path, rows)
    with ResultStore(db) as s:
        rid = s.resolve()
        df, info = s.measurements(rid), s.run_info(rid)
    a = build_assessment(df, rub, info)
    t = a.table.set_index("scheme")
    ss, od = t.loc["server-side"], t.loc["on-device-list"]
    # server-side recall 0.6 [0.39, 0.78]: the worse end 0.39 is poor, the better end fair -> poor, inconclusive;
    # fpr 0 [0, 0.0713] with on = "ci_high" (this rubric rates that bound only): fair, conclusive
    rec, fpr = ss["eff"].cells
    assert (rec.rating, rec.best, rec.basis) == ("poor", "fair", 0.39) and rec.inconclusive
    assert (fpr.rating, fpr.best, fpr.basis) == ("fair", "fair", 0.0713) and not fpr.inconclusive
    # the n that resolves recall, from the Wilson interval's defining equation |p - T| = z sqrt(T(1-T)/n):
    # its lower end reaches 0.5 at n = z^2 0.25 / 0.1^2
    assert rec.resolve_n == math.ceil(Z95 ** 2 * 0.25 / 0.01)
    assert ss["eff"].rating == "poor" and ss["eff"].best == "fair" and ss["eff"].inconclusive
    assert (ss["eff"].rated, ss["eff"].total) == (2, 2)
    assert rec.n == 20 and rec.params == json.dumps({"slice": "all"})
    assert ss["cost"].rating == "none" and not ss["cost"].cells[0].measured and ss["cost"].rated == 0
    # on-device-list: recall fair (inconclusive, good at its better end), fpr missing: 1 of 2, incomplete
    assert [c.rating for c in od["eff"].cells] == ["fair", "none"]
    assert od["eff"].cells[0].resolve_n == math.ceil(Z95 ** 2 * 0.09 / 0.05 ** 2)
    assert od["eff"].rating == "fair" and not od["eff"].complete and (od["eff"].rated, od["eff"].total) == (1, 2)
    assert od["cost"].rating == "poor" and not od["cost"].cells[0].inconclusive
    assert a.provenance["run_id"] == rid and a.provenance["seed"] == 3


def _one(tmp_path, rows, rub=MINI, scheme="server-side", crit="eff"):
    rubric = rubric_from_dict(__import__("tomllib").loads(rub))
    db = _store(tmp_path, rows)
    with ResultStore(db) as s:
        df = s.measurements(s.resolve())
    return build_assessment(df, rubric).table.set_index("scheme").loc[scheme, crit]


def test_incomplete_criterion_is_never_green(tmp_path):
    cc = _one(tmp_path, [Measurement("server-side", "recall", 1.0, "rate", 400, 0.99, 1.0, {"slice": "all"})])
    assert cc.cells[0].rating == "good" and not cc.cells[0].inconclusive
    assert cc.rating == "none" and (cc.rated, cc.total) == (1, 2)   # fpr missing: could be anything
    from e2eebench.evaluation.assess.formats import criterion_text
    assert "1 of 2 measured" in criterion_text(cc, rubric_from_dict(__import__("tomllib").loads(MINI)))


def test_complete_green_criterion_is_green(tmp_path):
    cc = _one(tmp_path, [Measurement("server-side", "recall", 1.0, "rate", 400, 0.99, 1.0, {"slice": "all"}),
                         Measurement("server-side", "fpr", 0.0, "rate", 1000, 0.0, 0.0038)])
    assert cc.rating == "good" and cc.complete and not cc.inconclusive


@pytest.mark.parametrize("label", ["declared", "modelled", "extrapolated"])
def test_declared_and_modelled_are_shown_never_rated(tmp_path, label):
    cc = _one(tmp_path, [Measurement("server-side", "recall", 1.0, "rate", 400, 0.99, 1.0, {"slice": "all"},
                                     label=label),
                         Measurement("server-side", "fpr", 0.0, "rate", 1000, 0.0, 0.0038)])
    rec = cc.cells[0]
    assert rec.measured and rec.value == 1.0 and rec.rating == "none" and label in rec.note
    assert cc.rating == "none" and (cc.rated, cc.total) == (1, 2)


def test_mean_interval_resolve_n_scales_as_root_n(tmp_path):
    # client_ms 15 [5, 25], n = 10, green <= 10: the lower end leaves the green band once
    # 10 sqrt(10 / m) < 5, i.e. m > 40
    cc = _one(tmp_path, [Measurement("server-side", "client_ms", 15.0, "ms", 10, 5.0, 25.0)], crit="cost")
    m = cc.cells[0]
    assert m.rating == "fair" and m.best == "good" and m.resolve_n == 41 and "approximate" in m.note


def test_zero_rate_resolves_where_the_wilson_upper_end_clears_the_threshold(tmp_path):
    # 0 of 50 [0, 0.0713], green <= 0.01: the upper end z^2 / (n + z^2) falls to 0.01 at n = z^2 0.99 / 0.01
    rub = MINI.replace('on = "ci_high"\n', "")
    m = _one(tmp_path, [Measurement("server-side", "fpr", 0.0, "rate", 50, 0.0, 0.0713)], rub=rub).cells[1]
    assert (m.rating, m.best) == ("fair", "good") and m.resolve_n == math.ceil(Z95 ** 2 * 0.99 / 0.01)
    assert "Wilson" in m.note


def test_value_on_a_zero_threshold_cannot_be_resolved(tmp_path):
    rub = MINI.replace('on = "ci_high"\n', "").replace("green = 0.01\namber = 0.1", "green = 0\namber = 0.1")
    cc = _one(tmp_path, [Measurement("server-side", "fpr", 0.0, "rate", 50, 0.0, 0.0713)], rub=rub)
    m = cc.cells[1]
    assert m.inconclusive and m.resolve_n is None and "threshold" in m.note


def test_shown_metric_is_never_rated_nor_counted(tmp_path):
    rub = MINI + "\n[criteria.eff.metrics.second]\nshow = true\n"
    cc = _one(tmp_path, [Measurement("server-side", "second", 0.5, "rate", 10, 0.2, 0.8),
                         Measurement("server-side", "recall", 1.0, "rate", 400, 0.99, 1.0, {"slice": "all"}),
                         Measurement("server-side", "fpr", 0.0, "rate", 1000, 0.0, 0.0038)], rub=rub)
    assert cc.cells[2].shown and cc.cells[2].rating == "none" and cc.cells[2].value == 0.5
    assert cc.rating == "good" and (cc.rated, cc.total) == (2, 2)


def test_percentile_rows_are_rated_on_their_value(tmp_path):
    cc = _one(tmp_path, [Measurement("server-side", "client_ms", 5.0, "ms", 10, 1.0, 500.0,
                                     {"stat": "median [p10, p90]"})], crit="cost")
    assert cc.cells[0].rating == "good" and not cc.cells[0].inconclusive


def test_unimplemented_design_schemes_are_rows_without_numbers(tmp_path, monkeypatch):
    import e2eebench.evaluation.assess.assessment as assessment
    from e2eebench.protocols.registry import SCHEMES
    monkeypatch.setattr(assessment, "PLANNED_SCHEMES", assessment.PLANNED_SCHEMES + ("future-scheme",))
    db = _store(tmp_path, [Measurement("server-side", "recall", 1.0, "rate", 4, 0.5, 1.0, {"slice": "all"})])
    a = assess_run(db)
    long = a.long()
    planned = [s for s in assessment.PLANNED_SCHEMES if s not in SCHEMES]
    assert "future-scheme" in planned
    for s in planned:
        row = a.table[a.table.scheme == s].iloc[0]
        assert row["status"].startswith(NOT_IMPLEMENTED)
        sub = long[long.scheme == s]
        assert len(sub) and sub["value"].isna().all() and (sub["label"] == "not measured").all()
    # registered but not run: no numbers either
    others = [s for s in SCHEMES if s != "server-side"]
    assert others
    for s in others:
        sub = long[long.scheme == s]
        assert len(sub) and sub["value"].isna().all()


def test_custom_rubric_file_changes_the_rating(tmp_path):
    db = _store(tmp_path, [Measurement("server-side", "recall", 0.8, "rate", 10, 0.49, 0.94, {"slice": "all"})])
    strict = tmp_path / "strict.toml"
    strict.write_text(MINI.replace("green = 0.9\namber = 0.5", "green = 0.99\namber = 0.95"))
    lax = tmp_path / "lax.toml"
    lax.write_text(MINI.replace("green = 0.9\namber = 0.5", "green = 0.45\namber = 0.3"))
    rs = assess_run(db, rubric=str(strict)).table.set_index("scheme").loc["server-side", "eff"].cells[0].rating
    rl = assess_run(db, rubric=str(lax)).table.set_index("scheme").loc["server-side", "eff"].cells[0].rating
    assert (rs, rl) == ("poor", "good")


@pytest.mark.parametrize("edit, key", [
    (lambda s: s.replace('direction = "higher"', 'direction = "up"'), "criteria.eff.metrics.recall.direction"),
    (lambda s: s.replace("green = 0.9\n", 'green = "x"\n'), "criteria.eff.metrics.recall.green"),
    (lambda s: s.replace("green = 0.9\n", "green = 0.1\n"), "criteria.eff.metrics.recall"),
    (lambda s: s.replace('on = "ci_high"', 'on = "median"'), "criteria.eff.metrics.fpr.on"),
    (lambda s: s.replace("amber = 100", "amber = 100\ncolour = 1"), "criteria.cost.metrics.client_ms.colour"),
    (lambda s: s.replace('title = "Eff"', 'title = "Eff"\nweight = 2'), "criteria.eff.weight"),
    (lambda s: s.replace("green = 10\n", ""), "criteria.cost.metrics.client_ms.green"),
    (lambda s: s + "\n[extra]\n", "[extra]"),
    (lambda s: s.replace('ratings = ["good", "fair", "poor"]', 'ratings = ["good", "good", "poor"]'), "scale.ratings"),
])
def test_malformed_rubric_names_the_key(tmp_path, edit, key):
    p = tmp_path / "bad.toml"
    p.write_text(edit(MINI))
    with pytest.raises(ConfigError, match=__import__("re").escape(key)):
        load_rubric(p)


def test_rubric_not_toml_or_missing(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[criteria\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rubric(p)
    with pytest.raises(InputError, match="not found"):
        load_rubric(tmp_path / "nope.toml")


def test_missing_value_is_not_measured_even_with_text(tmp_path):
    rub = rubric_from_dict(__import__("tomllib").loads(MINI))
    db = _store(tmp_path, [Measurement("server-side", "recall", None, "rate", 0, params={"slice": "all"},
                                       text="no known images sent")])
    with ResultStore(db) as s:
        df = s.measurements(s.resolve())
    c = build_assessment(df, rub).table.set_index("scheme").loc["server-side", "eff"].cells[0]
    assert c.rating == "none" and c.measured and c.text == "no known images sent" and c.value is None
    assert not math.isnan(c.n)


def test_a_study_joins_runs_and_each_cell_names_its_run(tmp_path):
    db = str(tmp_path / "r.duckdb")
    with ResultStore(db) as s:
        comparison = s.write_run([Measurement("psi-ad", "recall", 0.8, "rate", 20, 0.58, 0.92, {"slice": "all"}),
                                  Measurement("psi-ad", "evasion_success_rate", 1.0, "rate", 4, 0.51, 1.0)],
                                 command="run", config={}, seed=0, run_id="cmp")
        attack = s.write_run([Measurement("psi-ad", "evasion_success_rate", 0.02, "rate", 400, 0.0077, 0.0512)],
                             command="attack evasion", config={}, seed=0, run_id="atk")
    a = assess_run(db, comparison, with_runs=[attack])
    t = a.table.set_index("scheme")
    ev = [m for m in t.loc["psi-ad", "security"].cells if m.metric == "evasion_success_rate"][0]
    rec = t.loc["psi-ad", "effectiveness"].cells[0]
    assert (ev.n, ev.run_id, ev.candidates) == (400, "atk", 2) and rec.run_id == "cmp"
    assert [e["run_id"] for e in a.provenance["with_runs"]] == ["atk"]
    long = a.long()
    assert set(long[long.label != "not measured"]["source_run"]) == {"cmp", "atk"}
    from e2eebench.evaluation.assess.formats import to_markdown
    assert "with run: atk (command attack evasion" in to_markdown(a)
