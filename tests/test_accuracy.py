"""Robustness benchmark pieces: blocked histogram, Thorn's method, FPR thresholds, a tiny run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from e2eebench.evaluation.accuracy.robustness import (RobustnessBenchmark, fpr_text, roc_curve, source_refs, thorn_threshold,
                                           threshold_for_fpr)
from e2eebench.evaluation.data.hashing_pool import group_codes, hash_sources, pair_histogram
from e2eebench.protocols.errors import ConfigError, UnknownNameError


@pytest.mark.parametrize("nbytes,bits", [(8, 64), (32, 256), (3, 24)])
def test_blocked_histogram_equals_brute_force(nbytes, bits):
    rng = np.random.default_rng(nbytes)
    q = rng.integers(0, 256, (37, nbytes), dtype=np.uint8)
    r = rng.integers(0, 256, (23, nbytes), dtype=np.uint8)
    q[:5] = r[:5]                                    # some exact duplicates
    qg = rng.integers(0, 6, 37)
    rg = rng.integers(0, 6, 23)
    pc = pair_histogram(q, r, bits, query_groups=qg, ref_groups=rg, block=4)
    brute = np.zeros(bits + 1, np.int64)
    nearest = np.full(37, bits + 1)
    for i in range(37):
        for j in range(23):
            if qg[i] == rg[j]:
                continue
            d = sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(q[i], r[j]))
            brute[d] += 1
            nearest[i] = min(nearest[i], d)
    assert np.array_equal(pc.hist, brute)
    assert np.array_equal(pc.nearest, nearest)
    assert pc.pairs == int((qg[:, None] != rg[None, :]).sum())


def test_thorn_method_on_hand_built_case():
    # 5 transformed images: distance to own source (pos) and to nearest other source (neg).
    pos = np.array([1, 2, 4, 9, 20])
    neg = np.array([30, 8, 25, 40, 50])
    # tau = 7: tp = 3 (1, 2, 4), fp = 0 -> precision 1.  tau = 8: fp = 1 (8) -> 3/4 < 0.9.
    # tau = 9: tp = 4, fp = 1 -> 0.8.  tau = 20: tp = 5, fp = 1 -> 5/6 = 0.833.  tau = 25: fp = 2.
    # Thorn's code walks the positive distances (1, 2, 4, 9, 20): at 9 precision is 4/5 < 0.9,
    # so it stops and takes the candidate before, 4 (recall 3/5).
    assert thorn_threshold(pos, neg, 0.9, 64) == (4, 3, 0)
    # precision >= 0.8: 4/5 at 9 and 5/6 at 20 never fail -> the largest positive, 20
    assert thorn_threshold(pos, neg, 0.8, 64) == (20, 5, 1)
    assert thorn_threshold(np.array([9]), np.array([3]), 0.5, 64) == (9, 1, 1)
    assert thorn_threshold(np.array([65]), np.array([0]), 0.9, 64) == (None, 0, 0)


def test_threshold_for_fpr_and_bound_text():
    hist = np.zeros(65, np.int64)
    hist[[5, 10, 20, 32]] = [1, 9, 990, 999_000]     # 1e6 pairs
    assert threshold_for_fpr(hist, 1e-6) == 9            # 1 pair <= 9 (and 10 more at 10)
    assert threshold_for_fpr(hist, 1e-5) == 19           # 10 pairs <= 19
    assert threshold_for_fpr(hist, 1e-7) == 4            # only where none is observed
    assert "bounded" in fpr_text(0, 10**6, 1e-7) and "below" in fpr_text(0, 10**6, 1e-7)
    assert fpr_text(3, 10**6) is None
    roc = roc_curve(np.array([0, 3, 12]), hist, 64)
    assert roc.tpr.iloc[-1] == 1.0 and roc.fpr.iloc[10] == pytest.approx(10 / 1e6)


def test_hash_pool_is_deterministic_across_worker_counts():
    refs = source_refs("dead-leaves", 5, seed=3, size=64)
    a = hash_sources(refs, ["jpeg:q=50", "noise:sigma=0.02"], ["pdq", "dhash"], seed=1, workers=1, chunk=2)
    b = hash_sources(refs, ["jpeg:q=50", "noise:sigma=0.02"], ["pdq", "dhash"], seed=1, workers=2, chunk=3)
    for h in ("pdq", "dhash"):
        assert np.array_equal(a.original[h], b.original[h])
        assert np.array_equal(a.transformed[h], b.transformed[h])
    assert np.array_equal(a.quality_transformed, b.quality_transformed)


def test_tiny_benchmark_rows_and_store(tmp_path):
    res = RobustnessBenchmark(["pdq", "dhash"], ["identity", "crop:0.2"], "dead-leaves", 12, seed=2, size=64,
                              workers=1, calibrate=False, quality_filter=True).run()
    df = res.to_frame()
    assert {"hasher", "transform", "metric", "value"} <= set(df.columns)
    ident = df[(df.metric == "recall") & (df["transform"] == "identity") & (df.threshold_kind == "default")
               & df.quality_filter.isna()]
    assert len(ident) == 2 and (ident.value == 1.0).all()   # an untouched copy is distance 0
    pdq = res.record("pdq")
    assert pdq.pairs == 2 * 12 * 11                     # every (copy, other source) pair
    assert pdq.hist[0].sum() == 12 * 11
    # the Thorn row uses nearest-incorrect distances: identity is always perfectly separable
    rap = df[(df.metric == "recall_at_precision") & (df["transform"] == "identity") & df.quality_filter.isna()]
    assert len(rap) == 2 and (rap.value == 1.0).all()
    from e2eebench.evaluation.run.store import ResultStore
    with ResultStore(tmp_path / "a.duckdb") as st:
        rid = st.write_run(res.measurements(), command="accuracy", config={}, seed=2)
        stored = st.measurements(rid)
    assert len(stored) == len(df)
    assert json.loads(stored.params.iloc[0])["hasher"] in ("pdq", "dhash")


def test_bad_input_is_typed():
    with pytest.raises(ConfigError):
        source_refs("dead-leaves", 1)
    with pytest.raises(UnknownNameError):
        RobustnessBenchmark(["nohash"], ["identity"], "dead-leaves", 4, calibrate=False)
    with pytest.raises(UnknownNameError):
        RobustnessBenchmark(["pdq"], ["nosuchedit"], "dead-leaves", 4, calibrate=False)
    with pytest.raises(ConfigError):
        RobustnessBenchmark(["pdq"], ["identity"], "dead-leaves", 4, precision=1.5, calibrate=False)


def test_group_codes():
    assert list(group_codes(["b", "a", "b"])) == [1, 0, 1]


def test_cli_accuracy_json_and_errors(capsys):
    from e2eebench.evaluation.cli.app import main
    rc = main(["accuracy", "--hashers", "dhash", "--transforms", "identity,flip", "--n", "4", "--corpus",
               "dead-leaves", "--size", "32", "--workers", "1", "--no-calibrate", "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"]["dhash"] == 2 * 4 * 3
    rows = [r for r in out["rows"] if r["metric"] == "recall" and r["transform"] == "identity"]
    assert rows and rows[0]["value"] == 1.0 and rows[0]["n"] == 4
    assert main(["accuracy", "--hashers", "nohash", "--n", "4"]) == 2
    assert main(["accuracy", "--n", "1", "--corpus", "dead-leaves"]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_account_model_agrees_with_its_monte_carlo(capsys):
    from e2eebench.evaluation.cli.app import main
    rc = main(["accuracy", "account", "--fpr", "0.01", "--messages", "200", "--t", "1,3", "--mc", "4000",
               "--format", "json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["t"] for r in rows] == [1, 3] and all(r["mc_agrees"] for r in rows)
    assert rows[0]["innocent_flag_prob"] == pytest.approx(1 - 0.99 ** 200, rel=1e-12)
    assert main(["accuracy", "account", "--messages", "10"]) == 2     # neither --fpr nor --pair-fpr


def test_distributions_sum_to_counts():
    res = RobustnessBenchmark(["dhash"], ["identity", "rotate:4"], "dead-leaves", 6, seed=1, size=32,
                              workers=1, calibrate=False).run()
    d = res.distributions()
    assert len(d) == 2
    for row in d:
        assert sum(row["matched"]) + row["discarded"] == 6
        assert sum(row["unrelated"]) == 6 * 5
    assert d[0]["matched"][0] == 6                      # identity: all at distance 0
    roc = res.roc_curves()["dhash"]
    assert roc[-1]["tpr"] == 1.0 and roc[-1]["fpr"] == 1.0
