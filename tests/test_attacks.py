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
    # threshold = the hash length: no edit can move the hash beyond it, so the attack must fail
    r = blackbox_attack(h, images[0][1], budget=12, seed=1, threshold=h.bits)
    assert not r.success and r.queries <= 12
    assert r.distance == 0 and r.psnr_db == float("inf")   # the image is returned unchanged
    rs = run_evasion(h, images, "black-box", budget=150, seed=0)
    s = summarise(rs, h, 150)
    assert s["n"] == 2 and s["reached_any_quality"]["k"] == sum(r.success for r in rs) == 2
    assert s["successes"] == sum(r.success and r.psnr_db >= 35 and r.ssim >= 0.95 for r in rs)
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
    from e2eebench.evaluation.run.strictjson import loads_strict
    s = loads_strict(buf.getvalue())
    assert s["n"] == 1 and s["successes"] in (0, 1) and s["success_rate"] == s["successes"]
    assert s["quality_floor"]["psnr_db"] == 35.0 and s["threshold"] == get_hasher("phash").default_threshold
    with ResultStore(tmp_path / "a.duckdb") as st:
        df = st.measurements(st.resolve())
    row = df[df.metric == "evasion_success_rate"].iloc[0]
    assert row["value"] == s["success_rate"] and row["n"] == 1
    assert json.loads(row["params"])["psnr_floor_db"] == 35.0
    assert main(["attack", "evasion", "--hasher", "nope"]) == 2


def test_profile_measurements_per_scheme():
    from e2eebench.evaluation.attacks.profile import profile_measurements, scheme_profile
    h = get_hasher("pdq")
    pool = candidate_pool(h, 4, 10, seed=7)
    profs = [scheme_profile(n, h, pool, seed=7) for n in ("on-device-list", "psi-ad")]
    ms = profile_measurements(profs, h, {}, None, relay_swap_detected())
    got = {(m.scheme, m.metric): m for m in ms}
    # measured from the schemes' roles: the plain list ships its hashes and is an offline oracle;
    # psi-ad ships a blinded table, learns nothing on the device and rejects a replayed voucher
    assert got[("on-device-list", "list_hashes_exposed")].value == 1.0
    assert got[("psi-ad", "list_hashes_exposed")].value == 0.0
    assert got[("on-device-list", "membership_oracle_class")].text.startswith("offline")
    assert got[("psi-ad", "membership_oracle_class")].text.startswith("none")
    assert got[("on-device-list", "oracle_queries_per_s")].value > 0
    assert got[("psi-ad", "oracle_queries_per_s")].value is None
    assert got[("psi-ad", "payload_replay_detected")].value == 1.0
    assert not any(m.metric == "evasion_success_rate" for m in ms)   # no attack summary given, none stored


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
    from e2eebench.evaluation.attacks.evasion import QualityFloor
    h2 = get_hasher("phash")
    rs = run_evasion(h2, corpus_images("dead-leaves", 3, 3, size=128), "white-box", 400, 0)
    lax = QualityFloor(10.0, 0.0, "test")  # admit every success, so percentiles exist
    ev = {"white-box": summarise(rs, h2, 400, floor=lax)}
    ps = sorted(r.psnr_db for r in rs if r.success)
    assert ps, "the white-box attack found no success on three images"
    rows = _attack_rows("s", h2, ev, None, None)
    psnr = [x for x in rows if x.metric == "evasion_psnr_db"][0]
    assert psnr.params["stat"] == "median [p10, p90]"
    assert psnr.value == pytest.approx(float(np.median(ps))) and psnr.ci_low <= psnr.value <= psnr.ci_high
    assert (psnr.ci_low, psnr.ci_high) == pytest.approx((np.quantile(ps, .1), np.quantile(ps, .9)))
    rate = [x for x in rows if x.metric == "evasion_success_rate"][0]
    assert rate.params["psnr_floor_db"] == 10.0 and rate.n == 3 and rate.value == len(ps) / 3


def test_success_counts_only_above_the_quality_floor():
    """A success below the floor is not a success; the curve over floors counts the same attempts."""
    from e2eebench.evaluation.attacks.evasion import AttackResult, QualityFloor
    h = get_hasher("pdq")
    rs = [AttackResult("a", "white-box", True, 40, 100, 38.0, 0.97),    # above both floors
          AttackResult("b", "white-box", True, 40, 100, 33.0, 0.97),    # PSNR too low
          AttackResult("c", "white-box", True, 40, 100, 40.0, 0.90),    # SSIM too low
          AttackResult("d", "white-box", False, 0, 400, float("inf"), 1.0)]
    s = summarise(rs, h, 400)
    assert s["successes"] == 1 and s["success_rate"] == 0.25 and s["reached_any_quality"]["k"] == 3
    assert s["quality_floor"] == {"psnr_db": 35.0, "ssim": 0.95, "criterion": QualityFloor().criterion}
    assert s["success_at_psnr_floor"][30.0]["k"] == 2 and s["success_at_psnr_floor"][40.0]["k"] == 0
    assert s["success_at_ssim_floor"][0.90]["k"] == 2 and s["success_at_psnr_floor_any_ssim"][30.0]["k"] == 3
    assert summarise(rs, h, 400, floor=QualityFloor(30.0, 0.9, "lax"))["successes"] == 3


def test_attack_uses_the_threshold_it_is_given(images):
    """Judged at the scheme's threshold: an exact-matching scheme (threshold 0) is evaded by a
    one-bit change the default threshold would still match."""
    h = get_hasher("pdq")
    r0 = whitebox_attack(h, images[0][1], budget=400, threshold=0)
    r31 = whitebox_attack(h, images[0][1], budget=400)
    assert r0.success and 0 < r0.distance and r31.success and r31.distance > h.default_threshold
    assert r0.psnr_db > r31.psnr_db   # a smaller move: higher quality


def test_cli_collision_pdq_json_has_the_floor_and_counts_only_above_it(tmp_path):
    import contextlib
    import io
    import json
    from e2eebench.evaluation.cli.app import main
    from e2eebench.evaluation.run.strictjson import loads_strict
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["attack", "collision", "--hasher", "pdq", "--n", "2", "--format", "json"]) == 0
    s = loads_strict(buf.getvalue())
    fl = s["quality_floor"]
    assert (fl["psnr_db"], fl["ssim"]) == (35.0, 0.95) and fl["criterion"]
    above = [c for c in s["cases"] if c["success"] and c["psnr_db"] is not None
             and c["psnr_db"] >= fl["psnr_db"] and c["ssim"] >= fl["ssim"]]
    assert s["successes"] == len(above) and s["success_rate"] == len(above) / 2
    assert s["reached_any_quality"]["k"] == sum(c["success"] for c in s["cases"])
    assert s["threshold"] == get_hasher("pdq").default_threshold
    assert "with_secret_second_hash" in s and s["with_secret_second_hash"]["success_rate"] <= s["success_rate"]
