"""Hard negatives, distinct-image rates, the prevalence curve, the account model's resend
correction and Thorn's rule."""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher
from e2eebench.evaluation.accuracy.account_model import (binom_tail, resend_flag_prob, resend_model_check,
                                                         source_pair_counts, zipf_popularity)
from e2eebench.evaluation.accuracy.robustness import largest_threshold_at_precision, thorn_threshold
from e2eebench.evaluation.data.corpora import get_corpus
from e2eebench.evaluation.data.hard_negatives import (HardNegativeConfig, hard_negative_items, pair_distances,
                                                      sibling_of)
from e2eebench.evaluation.run.metrics import per_image, precision_at, precision_curve
from e2eebench.evaluation.run.store import Measurement
from e2eebench.protocols.errors import ConfigError


def test_hard_negatives_are_deterministic_distinct_and_partly_within_pdq_31():
    known = get_corpus("dead-leaves", seed=3).items(6)
    cfg = HardNegativeConfig(fraction=0.5, kinds=("scene", "meme", "burst"))
    a = hard_negative_items(24, known, cfg, seed=3, size=128)
    b = hard_negative_items(24, known, cfg, seed=3, size=128)
    assert [x.id for x in a] == [x.id for x in b]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b))
    assert len({x.group for x in a}) == 24                  # every member its own image
    assert len({np.asarray(x.image).tobytes() for x in a}) == 24
    assert any(sibling_of(x.id) in {k.id for k in known} for x in a)
    h = get_hasher("pdq")
    d = np.concatenate(list(pair_distances(a, known, h.hash, h.bits).values()))
    share = (d <= 31).mean()
    assert 0.05 < share < 0.95                             # look-alikes, not copies


def test_tighter_families_put_more_pairs_within_the_threshold():
    h = get_hasher("pdq")
    def share(strength):
        items = hard_negative_items(24, [], HardNegativeConfig(fraction=1, kinds=("scene",), strength=strength), 1, 128)
        return (np.concatenate(list(pair_distances(items, [], h.hash, h.bits).values())) <= 31).mean()
    assert share(0.2) > share(2.0)


def test_hard_negative_config_rejects_unknown_kinds():
    with pytest.raises(ConfigError):
        HardNegativeConfig.from_dict({"kinds": ["selfie"]})
    with pytest.raises(ConfigError):
        HardNegativeConfig.from_dict({"colour": 1})


class _O:
    def __init__(self, item, det):
        self.item_id, self.detected, self.message_id = item, det, item


def test_per_image_counts_an_image_resent_43_times_once():
    outs = [_O("a", True)] * 43 + [_O(f"b{i}", False) for i in range(43)]
    k, n, msgs = per_image(outs)
    assert (k, n, msgs) == (1.0, 44, 86)


def test_precision_curve_falls_with_prevalence_and_propagates_intervals():
    rec = Measurement("s", "recall", 0.9, "rate", 100, 0.8, 0.95, {})
    fpr = Measurement("s", "fpr", 0.01, "rate", 1000, 0.005, 0.02, {})
    rows = [m for m in precision_curve("s", rec, fpr, {}) if m.params["slice"].startswith("prevalence=")]
    vals = [m.value for m in rows]
    assert vals == sorted(vals) and vals[0] < 1e-3 < vals[-1]
    for m in rows:
        assert m.label == "modelled" and m.ci_low < m.value < m.ci_high
        assert m.ci_low == pytest.approx(precision_at(0.8, 0.02, m.params["prevalence"]))


def test_resend_model_reduces_to_independent_images_when_many_images_match():
    # given the set F of false matches an account's count is Binomial(m, pop(F)); with ~100 false
    # images pop(F) concentrates at q and the model must give the independent-images tail
    pop = np.full(5000, 1 / 5000)
    assert resend_flag_prob(0.02, pop, 300, 8) == pytest.approx(binom_tail(300, 0.02, 8), rel=0.05)


def test_resends_make_t30_far_less_protective():
    pop = zipf_popularity(120, 1.3)
    assert resend_flag_prob(1e-6, pop, 7300, 30) > 1e3 * binom_tail(7300, 1e-6, 30)


def test_resend_check_passes_for_the_model_and_fails_for_a_wrong_one():
    pop = zipf_popularity(50, 1.3)
    ok, _ = resend_model_check(pop, 500, 5, seed=1, worlds=200, accounts=10)
    assert ok
    wrong = lambda q, pop, m, t, seed=0: binom_tail(m, q, t)   # the independent-images formula
    bad, text = resend_model_check(pop, 500, 5, seed=1, worlds=200, accounts=10, model=wrong)
    assert not bad and "model" in text


def test_source_pairs_count_each_pair_of_sources_once():
    smin = np.array([[0, 5, 40], [5, 0, 40], [40, 40, 0]])
    valid = ~np.eye(3, dtype=bool)
    assert source_pair_counts(smin, valid, 10) == (1, 3)


def test_thorn_stops_at_the_first_failing_threshold_where_the_old_rule_did_not():
    pos = np.array([1, 3] + [4] * 20)
    neg = np.array([2] + [200] * 21)
    assert thorn_threshold(pos, neg, 0.9, 256) == (1, 1, 0)
    tau, tp, fp = largest_threshold_at_precision(pos, neg, 0.9, 256)
    assert tau >= 4 and (tp, fp) == (22, 1)       # recall 1.0 past the failure at 3


def test_thorn_takes_the_largest_positive_when_precision_never_fails_and_none_when_the_first_does():
    assert thorn_threshold(np.array([2, 5, 7]), np.array([100, 100, 100]), 0.99, 256) == (7, 3, 0)
    assert thorn_threshold(np.array([5, 6]), np.array([1, 100]), 0.99, 256)[0] is None


def _photo_folder(path, n):
    from e2eebench.evaluation.data.corpora import get_corpus
    path.mkdir()
    for i, it in enumerate(get_corpus("bundled:crops=false").items(n)):
        it.image.resize((96, 96)).save(path / f"p{i:02d}.png")   # small: the test is about sizing
    return path


def test_a_folder_of_10_photos_is_sized_down_with_a_notice(tmp_path):
    from e2eebench.evaluation.api import quick_config
    from e2eebench.evaluation.run.runner import prepare
    d = _photo_folder(tmp_path / "photos", 10)
    data = prepare(quick_config(corpus=f"folder:{d}", schemes=["server-side"]))
    assert data.notice and "holds 10 images" in data.notice
    assert 1 <= len(data.known) and data.config.n_known == len(data.known) < 10
    assert data.config.n_benign == len(data.benign)


@pytest.mark.slow
def test_quick_on_a_folder_of_10_photos_runs_sized_down_with_a_notice(tmp_path, capsys):
    from e2eebench.evaluation.cli.app import main
    d = _photo_folder(tmp_path / "photos", 10)
    code = main(["run", "--quick", "--corpus", f"folder:{d}", "--schemes", "server-side",
                 "--db", str(tmp_path / "r.duckdb"), "--format", "json"])
    err = capsys.readouterr().err
    assert code == 0
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "holds 10 images" in notes[0] and "using" in notes[0]


def test_a_folder_of_one_photo_is_refused_with_one_line(tmp_path, capsys):
    from e2eebench.evaluation.cli.app import main
    d = _photo_folder(tmp_path / "one", 1)
    assert main(["run", "--quick", "--corpus", f"folder:{d}", "--schemes", "server-side",
                 "--db", str(tmp_path / "r.duckdb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least one known and one benign" in err[0]


def test_sizes_and_profiles_from_the_command_line():
    from e2eebench.evaluation.cli.app import apply_sizes, build_run_config
    cfg = build_run_config(None, False, "server-side", None, None, None, None, profile="quick")
    cfg = apply_sizes(cfg, n_known=7, n_benign=9, n_accounts=12, messages=240)
    assert (cfg.n_known, cfg.n_benign, cfg.workload.n_accounts, cfg.workload.days) == (7, 9, 12, 20)
    std = build_run_config(None, False, None, None, None, None, None, profile="standard")
    assert std.profile == "standard" and std.n_known >= 2000 and std.n_benign >= 5000
    with pytest.raises(ConfigError):
        build_run_config(None, True, None, None, None, None, None, profile="standard")
