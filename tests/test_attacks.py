"""Attacks: evasion, collision, oracle, dishonest client, security profile (tiny sizes)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from e2eebench.clientside.hashing import get_hasher, hamming
from e2eebench.evaluation.attacks.collision import run_collisions, summarise_collisions
from e2eebench.evaluation.attacks.dishonest import probe_dishonest, relay_swap_detected
from e2eebench.evaluation.attacks.evasion import (LowFreqBasis, blackbox_attack, corpus_images, psnr,
                                                 radius_for_psnr, run_evasion, summarise, whitebox_attack)
from e2eebench.evaluation.attacks.oracle import candidate_pool, run_oracle
from e2eebench.evaluation.data.corpora import get_corpus
from e2eebench.evaluation.attacks.profile import audit_probe, hashes_in_bundle
from e2eebench.protocols.errors import ConfigError
from e2eebench.server.database import KnownHashDatabase


@pytest.fixture(scope="module")
def images():
    return corpus_images("dead-leaves", 2, 3, size=128)


def test_basis_orthonormal_and_radius_matches_psnr():
    b = LowFreqBasis(64, 48, 6)
    m = np.stack([b.render(e) for e in np.eye(b.size)]).reshape(b.size, -1)
    assert np.allclose(m @ m.T, np.eye(b.size), atol=1e-9)
    c = np.random.default_rng(0).standard_normal(b.size)
    c *= radius_for_psnr(30.0, 64, 48) / np.linalg.norm(c)
    x = np.full((64, 48, 3), 128, np.uint8)
    y = np.clip(x + b.render(c)[..., None], 0, 255)
    assert abs(psnr(x, y) - 30.0) < 0.05


@pytest.mark.parametrize("hasher", ["phash", "pdq"])
def test_whitebox_evasion_moves_hash_beyond_threshold(images, hasher):
    h = get_hasher(hasher)
    iid, im = images[0]
    r = whitebox_attack(h, im, budget=400, image_id=iid, keep_image=True)
    assert r.success and r.queries <= 400
    d = hamming(h.hash(Image.fromarray(r.image)), h.hash(im))  # recomputed independently
    assert d == r.distance and d > h.default_threshold
    assert r.psnr_db == pytest.approx(psnr(np.asarray(im), r.image))
    assert r.psnr_db > 25


def test_blackbox_respects_budget_and_reports_failure_honestly(images):
    h = get_hasher("phash")
    r = blackbox_attack(h, images[0][1], budget=12, seed=1)
    assert r.queries <= 12
    if not r.success:
        assert r.distance == 0 and r.psnr_db == float("inf")
    rs = run_evasion(h, images, "black-box", budget=150, seed=0)
    s = summarise(rs, h, 150)
    assert s["n"] == 2 and s["successes"] == sum(r.success for r in rs)
    assert all(r.queries <= 150 for r in rs)


def test_whitebox_refuses_hasher_without_features(images):
    with pytest.raises(ConfigError):
        whitebox_attack(get_hasher("dhash"), images[0][1])


def test_collision_lands_within_threshold_and_second_hash_is_recomputed():
    h = get_hasher("phash")
    cases = run_collisions(h, 1, "white-box", 400, seed=5)
    c = cases[0]
    assert c.result.success
    target = h.hash(Image.fromarray(c.target_image))
    assert hamming(h.hash(Image.fromarray(c.result.image)), target) <= h.default_threshold
    assert hamming(h.hash(Image.fromarray(c.start)), target) > h.default_threshold  # the start did not match
    pdq = get_hasher("pdq")
    assert c.second_distance == hamming(pdq.hash(Image.fromarray(c.result.image)), pdq.hash(Image.fromarray(c.target_image)))
    s = summarise_collisions(cases, h, 400)
    assert s["with_secret_second_hash"]["second_hasher"] == "pdq"


def test_oracle_offline_for_on_device_list_and_none_for_psi_ad():
    h = get_hasher("pdq")
    pool = candidate_pool(h, 4, 12, seed=2)
    r = run_oracle("on-device-list", h, pool_data=pool)
    assert r.oracle == "offline" and r.candidates == 4 + 4 + 8
    assert r.confirmed_exact == 4 and r.queries_per_s > 0
    assert run_oracle("psi-ad", h, pool_data=pool).oracle == "none"


def test_dishonest_client_on_device_list():
    h = get_hasher("pdq")
    items = get_corpus("dead-leaves", seed=4, size=96).items(5)
    r = probe_dishonest("on-device-list", h, items[:3], items[3:])
    assert r.outcomes["honest"] == "detected"
    assert r.outcomes["strip"] == "accepted"          # the provider sees no report: undetectable
    assert r.outcomes["replay"].startswith("rejected")
    assert r.outcomes["garble"].startswith("rejected") and r.outcomes["forge"].startswith("rejected")
    assert r.noticed("substitute") is False
    assert relay_swap_detected() == {"alter": True, "strip": True}


def test_list_audit_and_exposed_hashes():
    h = get_hasher("pdq")
    items = get_corpus("dead-leaves", seed=6, size=96).items(4)
    db = KnownHashDatabase.from_images(items[:3], [h])
    assert hashes_in_bundle("on-device-list", h, db)
    assert not hashes_in_bundle("psi-ad", h, db)
    assert audit_probe("on-device-list", h, items[:3], items[3])[0]
    assert not audit_probe("psi-ad", h, items[:3], items[3])[0]


def test_cli_attack_evasion_json(tmp_path):
    import json
    from e2eebench.evaluation.cli.app import main
    from e2eebench.evaluation.run.store import ResultStore
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["attack", "evasion", "--hasher", "phash", "--n", "1", "--budget", "120", "--format", "json",
                   "--db", str(tmp_path / "a.duckdb")])
    assert rc == 0
    s = json.loads(buf.getvalue())
    assert s["n"] == 1 and 0 <= s["success_rate"] <= 1
    with ResultStore(tmp_path / "a.duckdb") as st:
        df = st.measurements(st.resolve())
    assert "evasion_success_rate" in set(df["metric"])
    assert main(["attack", "evasion", "--hasher", "nope"]) == 2


def test_profile_measurements_per_scheme():
    from e2eebench.evaluation.attacks.profile import profile_measurements, scheme_profile
    h = get_hasher("pdq")
    pool = candidate_pool(h, 4, 10, seed=7)
    profs = [scheme_profile(n, h, pool, seed=7) for n in ("on-device-list", "psi-ad")]
    ev = {"white-box": {"success_rate": 1.0, "n": 2, "ci_low": 0.34, "ci_high": 1.0, "budget": 400, "successes": 2,
                        "psnr_db": {"median": None}, "ssim": {"median": None}}}
    ms = profile_measurements(profs, h, ev, None, relay_swap_detected())
    got = {(m.scheme, m.metric): m for m in ms}
    assert got[("on-device-list", "list_hashes_exposed")].value == 1.0
    assert got[("psi-ad", "list_hashes_exposed")].value == 0.0
    assert got[("on-device-list", "oracle_queries_per_s")].value > 0
    assert got[("psi-ad", "oracle_queries_per_s")].value is None
    assert got[("psi-ad", "payload_replay_detected")].value == 1.0
    assert got[("psi-ad", "evasion_success_rate")].n == 2


def test_security_rates_carry_intervals_and_percentiles_are_labelled():
    """oracle_list_confirmed is a rate (Wilson interval, n = list size); a PSNR row whose
    ci columns hold percentiles says so in its params."""
    from e2eebench.evaluation.attacks.profile import _attack_rows, profile_measurements, scheme_profile
    from e2eebench.evaluation.run.stats import wilson
    h = get_hasher("pdq")
    pool = candidate_pool(h, 4, 10, seed=7)
    prof = scheme_profile("on-device-list", h, pool, seed=7)
    m = {x.metric: x for x in profile_measurements([prof], h, {}, None, relay_swap_detected())}["oracle_list_confirmed"]
    o = prof["oracle"]
    e = wilson(o.confirmed_jpeg, o.list_size)
    assert m.n == o.list_size and (m.ci_low, m.ci_high) == (e.ci_low, e.ci_high)
    assert m.ci_low <= m.value <= m.ci_high
    ev = {"white-box": {"success_rate": 1.0, "n": 2, "ci_low": 0.34, "ci_high": 1.0, "budget": 400, "successes": 2,
                        "psnr_db": {"median": 40.0, "p10": 38.0, "p90": 42.0}}}
    psnr = [x for x in _attack_rows("s", h, ev, None, None) if x.metric == "evasion_psnr_db"][0]
    assert psnr.params["stat"] == "median [p10, p90]" and (psnr.ci_low, psnr.ci_high) == (38.0, 42.0)
