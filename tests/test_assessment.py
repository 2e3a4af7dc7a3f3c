"""Rubric loading and rating rules, and the assessment table built from a stored run."""
from __future__ import annotations

import json
import math

import pytest

from e2eebench.evaluation.assess.assessment import NOT_IMPLEMENTED, assess_run, build_assessment
from e2eebench.evaluation.assess.rubric import load_rubric, rubric_from_dict
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
    # server-side: recall 0.6 -> fair; fpr rated on ci_high 0.0713 -> fair; criterion = worst = fair
    assert [c.rating for c in ss["eff"].cells] == ["fair", "fair"]
    assert ss["eff"].rating == "fair"
    assert ss["eff"].cells[0].n == 20 and ss["eff"].cells[0].params == json.dumps({"slice": "all"})
    assert ss["cost"].rating == "none" and not ss["cost"].cells[0].measured
    # on-device-list: recall good, fpr missing (none), criterion = worst measured = good
    assert [c.rating for c in od["eff"].cells] == ["good", "none"]
    assert od["eff"].rating == "good" and od["cost"].rating == "poor"
    assert a.provenance["run_id"] == rid and a.provenance["seed"] == 3


def test_unimplemented_design_schemes_are_rows_without_numbers(tmp_path):
    from e2eebench.protocols.registry import SCHEMES
    db = _store(tmp_path, [Measurement("server-side", "recall", 1.0, "rate", 4, 0.5, 1.0, {"slice": "all"})])
    a = assess_run(db)
    long = a.long()
    planned = [s for s in ("two-server-mpc", "enclave", "he-hamming", "he-cosine") if s not in SCHEMES]
    for s in planned:
        row = a.table[a.table.scheme == s].iloc[0]
        assert row["status"].startswith(NOT_IMPLEMENTED)
        sub = long[long.scheme == s]
        assert sub["value"].isna().all() and (sub["label"] == "not measured").all()
    # registered but not run: no numbers either
    for s in SCHEMES:
        if s != "server-side":
            assert long[long.scheme == s]["value"].isna().all()


def test_custom_rubric_file_changes_the_rating(tmp_path):
    db = _store(tmp_path, [Measurement("server-side", "recall", 0.8, "rate", 10, 0.49, 0.94, {"slice": "all"})])
    strict = tmp_path / "strict.toml"
    strict.write_text(MINI.replace("green = 0.9\namber = 0.5", "green = 0.99\namber = 0.95"))
    lax = tmp_path / "lax.toml"
    lax.write_text(MINI.replace("green = 0.9\namber = 0.5", "green = 0.7\namber = 0.5"))
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
