"""PSI schemes: correctness against plaintext matching, leakage, bad input, dishonest clients."""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher
from e2eebench.protocols.channel import DEVICE, PROVIDER, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.errors import (AuthenticationFailed, ConfigError, E2EEBenchError, MalformedMessage,
                                        ReplayError)
from e2eebench.protocols.psi import (REPORT_PLAIN, TPSI_PLAIN, PsiAd, PsiAdLsh, TPsiAd, binding, build_table,
                                     load_table, make_synthetic, make_voucher, open_voucher, voucher_len)


def _ctx(mid="m1", account="acct-1", seed=1, ledger=None):
    return MessageContext(mid, account, Channel(ledger or Ledger()), PartyClock(), np.random.default_rng(seed))


@pytest.fixture(scope="module")
def items():
    rng = np.random.default_rng(11)
    return [rng.bytes(32) for _ in range(60)]


@pytest.fixture(scope="module")
def table(items):
    return build_table(items, np.random.default_rng(5), 2, 0.45, b"PSB1")


def _voucher(table, x, account="acct-1", mid="m1", seed=0):
    pt, bundle = table
    dt = load_table(bundle, b"PSB1", "test")
    ad = binding(account, mid)
    return make_voucher(dt, x, ad + bytes(REPORT_PLAIN - len(ad)), ad, b"PSV1", np.random.default_rng(seed)), ad


def test_opens_iff_member(table, items):
    pt, _ = table
    seen: set = set()
    rng = np.random.default_rng(2)
    for j, (x, member) in enumerate([(x, True) for x in items[:20]] + [(rng.bytes(32), False) for _ in range(20)]):
        v, ad = _voucher(table, x, mid=f"m{j}", seed=j)
        res = open_voucher(pt, v, ad, b"PSV1", REPORT_PLAIN, seen)
        assert (res is not None) == member
        if member:
            assert res[1][:32] == ad


def test_provider_opens_no_nonmatching_voucher(table):
    """Thousands of non-member vouchers: none opens (a wrong open would be a false report)."""
    pt, bundle = table
    dt = load_table(bundle, b"PSB1", "test")
    rng = np.random.default_rng(3)
    seen: set = set()
    ad = binding("a", "m")
    opened = 0
    for _ in range(1200):
        v = make_voucher(dt, rng.bytes(32), ad + bytes(REPORT_PLAIN - 32), ad, b"PSV1", rng)
        opened += open_voucher(pt, v, ad, b"PSV1", REPORT_PLAIN, seen) is not None
    assert opened == 0


def test_two_vouchers_same_image_share_no_field(table, items):
    (v1, _), (v2, _) = _voucher(table, items[0], seed=1), _voucher(table, items[0], seed=2)
    k, plen = 2, REPORT_PLAIN + 16
    fields = lambda v: [v[4:36]] + [v[36 + i * plen: 36 + (i + 1) * plen] for i in range(k)] + [v[-16:]]
    f1, f2 = fields(v1), fields(v2)
    assert all(a != b for a, b in zip(f1, f2))
    # and no 8-byte window repeats between them (beyond the magic)
    windows = {v1[i:i + 8] for i in range(4, len(v1) - 8)}
    assert not any(v2[i:i + 8] in windows for i in range(4, len(v2) - 8))


def test_bundle_reveals_only_size(items):
    rng = np.random.default_rng(9)
    other = [rng.bytes(32) for _ in range(len(items))]
    pa, ba = build_table(items, np.random.default_rng(1), 2, 0.45, b"PSB1")
    pb, bb = build_table(other, np.random.default_rng(2), 2, 0.45, b"PSB1")
    assert len(ba) == len(bb)
    da, db_ = load_table(ba, b"PSB1", "a"), load_table(bb, b"PSB1", "b")
    assert da.n_slots == db_.n_slots
    from e2eebench.protocols.crypto_group import Point, hash_to_group
    from e2eebench.protocols.psi import H_DOMAIN
    for e in da.table:  # every slot, real or dummy, is a valid group element
        Point.decode(e)
    raw = {hash_to_group(x, H_DOMAIN).data for x in items}
    assert not raw & set(da.table)  # entries are blinded, not the hashes of the list
    assert len(set(da.table)) == len(da.table)  # dummies are fresh random points, no repeats


def test_bad_vouchers_typed(table, items):
    pt, _ = table
    v, ad = _voucher(table, items[0])
    n = voucher_len(2, REPORT_PLAIN)
    with pytest.raises(MalformedMessage):
        open_voucher(pt, v[:-1], ad, b"PSV1", REPORT_PLAIN, set())
    with pytest.raises(MalformedMessage):
        open_voucher(pt, b"XXXX" + v[4:], ad, b"PSV1", REPORT_PLAIN, set())
    # bad point encoding with a valid checksum: caught by the group layer, not a crash
    from e2eebench.protocols.psi import _check
    bad_q = bytes([0xFF] * 32)
    body = bad_q + v[36:-16]
    forged = b"PSV1" + body + _check(b"PSV1", body, ad)
    assert len(forged) == n
    with pytest.raises(MalformedMessage):
        open_voucher(pt, forged, ad, b"PSV1", REPORT_PLAIN, set())
    with pytest.raises(AuthenticationFailed):  # wrong account
        open_voucher(pt, v, binding("other", "m1"), b"PSV1", REPORT_PLAIN, set())
    seen: set = set()
    assert open_voucher(pt, v, ad, b"PSV1", REPORT_PLAIN, seen) is not None
    with pytest.raises(ReplayError):
        open_voucher(pt, v, ad, b"PSV1", REPORT_PLAIN, seen)


def test_rechecksummed_voucher_for_other_account_rejected_after_opening(items):
    """A dishonest client moves a matching voucher to another account and fixes the checksum."""
    hasher = get_hasher("pdq")
    s = PsiAd(hasher)
    rng = np.random.default_rng(4)
    pt, bundle = build_table(items[:8], rng, 2, 0.45, PsiAd.magic_bundle)
    dt = load_table(bundle, PsiAd.magic_bundle, "t")
    from e2eebench.protocols.psi import _check
    ad_a, ad_b = binding("alice", "m1"), binding("bob", "m1")
    v = make_voucher(dt, items[0], ad_a + bytes(REPORT_PLAIN - 32), ad_a, PsiAd.magic_voucher, rng)
    body = v[4:-16]
    moved = v[:4] + body + _check(PsiAd.magic_voucher, body, ad_b)
    state = {"table": pt, "seen": set()}
    with pytest.raises(AuthenticationFailed):
        s.provider_receive(state, moved, _ctx("m1", "bob"))


def test_synthetic_voucher_always_opens_and_looks_like_real(table):
    pt, bundle = table
    dt = load_table(bundle, b"PSB1", "t")
    rng = np.random.default_rng(6)
    seen: set = set()
    ad = binding("a", "m")
    idx = []
    for _ in range(200):
        v = make_synthetic(dt, bytes(TPSI_PLAIN), ad, b"TPV1", rng)
        assert len(v) == voucher_len(2, TPSI_PLAIN)
        res = open_voucher(pt, v, ad, b"TPV1", TPSI_PLAIN, seen)
        assert res is not None
        idx.append(res[0])
    # the opening position follows the table's placement fraction (public), within sampling error
    frac = np.mean(np.asarray(idx) == 0)
    assert abs(frac - dt.frac_first / 1000) < 0.12


# -- end to end on small traffic -------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    from e2eebench.evaluation.run.runner import RunConfig, prepare
    from e2eebench.evaluation.data.workload import WorkloadConfig
    cfg = RunConfig(corpus="dead-leaves", image_size=128, n_known=10, n_benign=30, seed=3,
                    workload=WorkloadConfig(n_accounts=10, offender_fraction=0.3, days=4,
                                            messages_per_account_per_day=3.0, image_fraction=0.9,
                                            offender_known_fraction=0.9, transformed_fraction=0.2),
                    profile="test")
    return prepare(cfg)


def _exact(data, mid):
    h = data.hasher.hash(data.images[mid])
    return bool((np.bitwise_count(data.db.hashes_for(data.hasher.name) ^ h).sum(axis=1) == 0).any())


def test_psi_ad_verdicts_equal_exact_matching(small):
    from e2eebench.evaluation.run.runner import run_scheme
    run = run_scheme("psi-ad", small)
    im = [o for o in run.outcomes if o.has_image]
    assert all(o.detected == _exact(small, o.message_id) for o in im)
    assert any(o.detected for o in im) and not all(o.detected for o in im)
    assert not run.ledger.learned_by(DEVICE, "verdict")  # the device learns nothing


def _account_exact_matches(small, run):
    by: dict[str, list[str]] = {}
    for o in run.outcomes:
        if o.has_image and _exact(small, o.message_id):
            by.setdefault(o.account, []).append(o.message_id)
    return by


@pytest.mark.parametrize("t", [2, 3])
def test_tpsi_ad_threshold(small, t):
    """Below t: no verdict, no report. At or above t: every real matched payload (synthetic-free
    run so 'every' is checkable exactly)."""
    from e2eebench.evaluation.run.runner import run_scheme
    run = run_scheme("tpsi-ad", small, params={"t": t, "synthetic_rate": 0.0})
    matches = _account_exact_matches(small, run)
    reported = {x.message_id for x in run.ledger.learned_by(PROVIDER, "report")}
    verdicts = {x.message_id for x in run.ledger.learned_by(PROVIDER, "verdict") if x.value}
    assert reported == verdicts
    assert any(len(ms) >= t for ms in matches.values())  # the case is not trivial
    for a, ms in matches.items():
        if len(ms) >= t:
            assert set(ms) <= reported
        else:
            assert not set(ms) & reported
    assert reported <= {m for ms in matches.values() for m in ms}


def test_tpsi_ad_with_synthetic_vouchers(small):
    from e2eebench.evaluation.run.runner import run_scheme
    run = run_scheme("tpsi-ad", small, params={"t": 2, "synthetic_rate": 0.3})
    matches = _account_exact_matches(small, run)
    reported = {x.message_id for x in run.ledger.learned_by(PROVIDER, "report")}
    assert reported <= {m for ms in matches.values() for m in ms}  # never a benign payload
    for a, ms in matches.items():
        if len(ms) < 2:
            assert not set(ms) & reported
    assert reported  # some account passes t despite synthetic vouchers (Berlekamp-Welch)


def test_tpsi_below_t_counts_overlap_benign(small):
    """Below t the provider sees only outer openings; an account with t-1 real matches and a
    benign account (both with synthetic vouchers) give overlapping counts, and neither yields
    a verdict or a report. (Counts are not identically distributed: see docs/psi.md.)"""
    s = TPsiAd(small.hasher, t=3, synthetic_rate=0.15)
    pstate, bundle = s.provider_setup(small.db, _ctx("setup"))
    known = [k.image for k in small.known[:2]]
    benign = [b.image for b in small.benign[:12]]
    counts: dict[str, list[int]] = {"benign": [], "offender": []}
    ledger = Ledger()
    for trial in range(8):
        for kind, imgs in (("benign", benign), ("offender", known + benign[:10])):
            acct = f"{kind}-{trial}"
            dstate = s.device_load(bundle, acct, _ctx("b", acct, seed=[trial, len(kind)]))
            opened = 0
            for j, img in enumerate(imgs):
                ctx = _ctx(f"{acct}-m{j}", acct, seed=[trial, j, len(kind)], ledger=ledger)
                s.provider_receive(pstate, s.device_prepare(dstate, img, ctx).payload, ctx)
            opened = sum(x.value for x in ledger.learned_by(PROVIDER, "outer_open")
                         if x.message_id.startswith(acct + "-"))
            counts[kind].append(opened)
    assert not ledger.learned_by(PROVIDER, "verdict") and not ledger.learned_by(PROVIDER, "report")
    assert max(counts["benign"]) > 0  # synthetic vouchers do open
    assert max(counts["benign"]) >= min(counts["offender"])  # some benign count reaches an offender's


def test_lsh_matches_chunk_rule(small):
    from e2eebench.evaluation.run.runner import run_scheme
    run = run_scheme("psi-ad-lsh", small)
    s = run.scheme
    im = [o for o in run.outcomes if o.has_image]
    assert all(o.detected == s.plaintext_match(small.db, small.hasher.hash(small.images[o.message_id]))
               for o in im)
    assert any(o.detected for o in im)


def test_lsh_bad_payload_typed(small):
    s = PsiAdLsh(small.hasher)
    pstate, bundle = s.provider_setup(small.db, _ctx("setup"))
    dstate = s.device_load(bundle, "acct-1", _ctx("b"))
    payload = s.device_prepare(dstate, small.known[0].image, _ctx()).payload
    s.provider_receive(pstate, payload, _ctx())
    with pytest.raises(ReplayError):
        s.provider_receive(pstate, payload, _ctx())
    with pytest.raises(MalformedMessage):
        s.provider_receive(pstate, payload[:-3], _ctx())
    with pytest.raises(E2EEBenchError):
        s.provider_receive(pstate, payload, _ctx("m2", "acct-2"))


def test_params_validated():
    h = get_hasher("pdq")
    with pytest.raises(ConfigError):
        PsiAd(h, load=0.8)  # two hash functions cannot hold 0.8
    with pytest.raises(ConfigError):
        TPsiAd(h, synthetic_rate=1.5)
    with pytest.raises(ConfigError):
        PsiAdLsh(h, min_chunks=99)


def test_psi_client_learns_device_learns(small):
    from e2eebench.evaluation.run.runner import run_scheme
    run = run_scheme("psi-client-learns", small)
    im = [o for o in run.outcomes if o.has_image]
    dev = {x.message_id: x.value for x in run.ledger.learned_by(DEVICE, "verdict")}
    assert all(dev[o.message_id] == _exact(small, o.message_id) for o in im)
    assert all(o.detected == _exact(small, o.message_id) for o in im)
    assert all(o.rounds >= 3 for o in im)  # request up, response down, envelope up


def test_bench_psi_small():
    from e2eebench.evaluation.bench.psi import bench_psi
    r = bench_psi(size=100, n_images=20, t=5)
    assert r["psi_ad_wrong_verdicts"] == 0 and r["openmined_wrong_verdicts"] == 0
    assert r["scalar_mult_us"] > 0 and r["provider_per_voucher_over_scalar_mult"] > 0.5
    with pytest.raises(ConfigError):
        bench_psi(size=5)


def test_count_distinguisher_model_matches_real_voucher_counts(small):
    """The binomial count model behind count_distinguisher_advantage, checked on real vouchers."""
    from scipy.stats import binom
    from e2eebench.evaluation.accuracy.account_model import count_distinguisher_advantage
    p, n_img = 0.3, 8
    s = TPsiAd(small.hasher, t=50, synthetic_rate=p)       # t out of reach: counts only
    pstate, bundle = s.provider_setup(small.db, _ctx("setup"))
    benign = [b.image for b in small.benign[:n_img]]
    ledger = Ledger()
    counts = []
    for a in range(60):
        acct = f"benign-{a}"
        dstate = s.device_load(bundle, acct, _ctx("b", acct, seed=[a]))
        for j, img in enumerate(benign):
            ctx = _ctx(f"{acct}-m{j}", acct, seed=[a, j, 7], ledger=ledger)
            s.provider_receive(pstate, s.device_prepare(dstate, img, ctx).payload, ctx)
        counts.append(sum(x.value for x in ledger.learned_by(PROVIDER, "outer_open")
                          if x.message_id.startswith(acct + "-")))
    counts = np.asarray(counts)
    # mean and variance of the real counts agree with Binomial(n, p) (4-sigma band on the mean)
    mean, var = binom.stats(n_img, p)
    assert abs(counts.mean() - mean) < 4 * np.sqrt(var / len(counts))
    # the advantage: exact bounds and monotone in k, vanishing as the synthetic rate grows
    assert count_distinguisher_advantage(100, 0.0, 1) == pytest.approx(1.0)
    assert count_distinguisher_advantage(100, 0.3, 0) == pytest.approx(0.0, abs=1e-12)
    a1, a5 = count_distinguisher_advantage(1000, 0.05, 1), count_distinguisher_advantage(1000, 0.05, 5)
    assert 0 < a1 < a5 < 1
    assert count_distinguisher_advantage(1000, 0.2, 1) < a1
