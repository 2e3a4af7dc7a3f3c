"""The leakage probes flag deliberately leaky variants and pass the fixed schemes.

Each leaky variant is a real parameter setting of a real scheme (kept for these tests): one
client key per device in client PSI (the provider links a device's repeats), detection
payloads attached only on a match (the recipient and a link observer read the verdict from
the length), 16-bit chunks in chunked PSI (at a 10^5-entry list nearly every benign image
opens its voucher).
"""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.protocols.channel import PROVIDER, RECIPIENT
from e2eebench.protocols.registry import SCHEMES
from e2eebench.evaluation.data.workload import WorkloadConfig
from e2eebench.evaluation.leakage.adversary import (adversary_probes, exceeds_declaration, lookup_attack,
                                                    newcombe, tokens)
from e2eebench.evaluation.leakage.chunks import chunk_scale, padded_list
from e2eebench.evaluation.run.runner import RunConfig, prepare, run_scheme
from e2eebench.evaluation.run.stats import wilson


@pytest.fixture(scope="module")
def data():
    # few accounts sending many images: every account repeats some benign image itself
    cfg = RunConfig(corpus="dead-leaves", image_size=128, n_known=10, n_benign=20, seed=3,
                    workload=WorkloadConfig(n_accounts=6, offender_fraction=0.34, days=6,
                                            messages_per_account_per_day=3.0, image_fraction=1.0),
                    profile="conformance")
    return prepare(cfg)


def _probe(data, name, **params):
    run = run_scheme(name, data, params=params)
    return run, adversary_probes(run, data)


def _get(ms, metric, party, **kw):
    out = [m for m in ms if m.metric == metric and m.params.get("party") == party
           and all(m.params.get(k) == v for k, v in kw.items())]
    assert len(out) == 1, (metric, party, kw, len(out))
    return out[0]


def test_one_key_client_psi_is_linked_and_fresh_keys_are_not(data):
    _, leaky = _probe(data, "psi-client-learns", client_key="device")
    m = _get(leaky, "linkability_advantage", PROVIDER, pairs="same-sender")
    assert m.n >= 3 and m.ci_low > 0, m
    assert exceeds_declaration(m, SCHEMES["psi-client-learns"])
    _, fixed = _probe(data, "psi-client-learns")
    m = _get(fixed, "linkability_advantage", PROVIDER, pairs="same-sender")
    assert m.n >= 3 and m.ci_low <= 0 <= m.ci_high and m.value == 0.0, m


def test_verdict_sized_payloads_are_read_by_recipient_and_observer(data):
    _, leaky = _probe(data, "psi-client-learns", payload="on-match")
    for party in (RECIPIENT, "observer:device-provider", "observer:provider-recipient"):
        m = _get(leaky, "verdict_inference_advantage", party)
        assert m.ci_low > 0.3, m
        assert exceeds_declaration(m, SCHEMES["psi-client-learns"])
    for name in ("psi-client-learns", "on-device-list"):
        _, fixed = _probe(data, name)
        for party in (RECIPIENT, "observer:device-provider", "observer:provider-recipient"):
            m = _get(fixed, "verdict_inference_advantage", party)
            assert m.ci_low <= 0 <= m.ci_high, (name, m)


def test_on_device_payloads_have_one_size(data):
    run = run_scheme("on-device-bloom", data)
    from e2eebench.protocols.messaging import parse_envelope
    sizes = {len(parse_envelope(b).payload) for t, b in run.ledger.received[RECIPIENT]}
    image = {o.message_id for o in run.outcomes if o.has_image}
    assert any(o.detected for o in run.outcomes) and len(image) > 10
    assert len(sizes) == 1 and 0 not in sizes, sizes


def test_sixteen_bit_chunks_leak_at_a_large_list_and_wider_chunks_do_not(data):
    lh = data.db.hashes_for("pdq")
    benign = np.stack([data.image_hash(m.id) for m in data.workload.image_messages if not m.known][:40])
    leaky = chunk_scale("psi-ad-lsh", benign, lh, 16, 2, 100_000, 0, {"party": PROVIDER})
    rate = next(m for m in leaky if m.metric == "benign_voucher_open_rate")
    assert rate.ci_low > 0.8 and rate.label == "modelled"
    fixed = chunk_scale("psi-ad-lsh", benign, lh, 32, 2, 100_000, 0, {"party": PROVIDER})
    rate = next(m for m in fixed if m.metric == "benign_voucher_open_rate")
    assert rate.value == 0.0
    assert SCHEMES["psi-ad-lsh"].params[-2].default == 32


def test_padded_list_keeps_the_real_entries_first():
    lh = np.arange(64, dtype=np.uint8).reshape(2, 32)
    p = padded_list(lh, 10, seed=1)
    assert p.shape == (10, 32) and (p[:2] == lh).all()
    assert (padded_list(lh, 10, seed=1) == p).all()


def test_tokens_find_shared_content_at_any_offset_and_nothing_in_fresh_bytes():
    rng = np.random.default_rng(0)
    a, b, c = rng.bytes(64), rng.bytes(64), rng.bytes(64)
    ta, tb = tokens([b"x" + a]), tokens([b"yy" + a + b])
    assert len(np.intersect1d(ta, tb)) > 40
    assert len(np.intersect1d(tokens([b]), tokens([c]))) == 0


def test_lookup_attacker_reads_a_perfect_feature_and_not_a_constant():
    labels = {f"m{i}": i % 3 == 0 for i in range(60)}
    tp, npos, fp, nneg = lookup_attack({k: (int(v),) for k, v in labels.items()}, labels, 0)
    assert (tp, fp) == (npos, 0)
    tp, npos, fp, nneg = lookup_attack({k: (1,) for k in labels}, labels, 0)
    assert tp == 0 and fp == 0
    lo, hi = newcombe(wilson(0, npos), wilson(0, nneg))
    assert lo < 0 < hi


class _NoSyntheticTPsi(SCHEMES["tpsi-ad"]):
    """Leaky tpsi-ad: declares synthetic_rate but its devices never send a synthetic voucher, so
    the provider's opened-voucher count below t is the real match count."""

    def is_synthetic(self, state, element):
        return False


def test_below_threshold_count_flags_a_device_without_synthetic_vouchers(data):
    from e2eebench.evaluation.leakage.counting import below_threshold
    run = run_scheme("tpsi-ad", data)
    fixed = [m for m in below_threshold(run, data, accounts=40) if m.metric == "below_threshold_advantage"
             and m.label == "measured"]
    assert [m.params["k"] for m in fixed] == [1, 2]
    for m in fixed:
        assert m.n == 80 and m.ci_low <= m.params["declared_bound"] <= m.ci_high, m
        assert not exceeds_declaration(m, SCHEMES["tpsi-ad"])
    assert fixed[0].value < 1.0  # synthetic vouchers do hide some accounts with one match
    run.scheme = _NoSyntheticTPsi(data.hasher, run.scheme.threshold, **run.scheme.p)
    leaky = [m for m in below_threshold(run, data, accounts=40) if m.metric == "below_threshold_advantage"
             and m.label == "measured"]
    assert all(m.value == 1.0 for m in leaky), leaky
    # k = 1, where the declared bound is furthest from 1, is flagged at this n
    assert exceeds_declaration(leaky[0], SCHEMES["tpsi-ad"]), leaky[0]


def test_count_bound_is_the_tv_distance_of_shifted_binomials():
    from e2eebench.clientside.hashing import get_hasher
    s = SCHEMES["tpsi-ad"](get_hasher("pdq"), synthetic_rate=0.0)
    assert s.count_advantage_bound(10, 1) == 1.0
    s = SCHEMES["tpsi-ad"](get_hasher("pdq"), synthetic_rate=0.05)
    assert abs(s.count_advantage_bound(1, 1) - 0.95) < 1e-12  # one image: opened always vs 5%
    assert 0 < s.count_advantage_bound(20, 1) < s.count_advantage_bound(20, 2) < 1


def test_content_attacker_reads_a_flag_byte_and_not_ciphertext():
    from e2eebench.evaluation.leakage.adversary import content_attack, content_features
    rng = np.random.default_rng(0)
    y = np.arange(150) % 3 == 0
    leaky = np.stack([content_features([bytes([int(v)]) + rng.bytes(47)]) for v in y])
    sealed = np.stack([content_features([rng.bytes(48)]) for _ in y])
    tp, npos, fp, nneg = content_attack(leaky, y, 0)
    lo, _ = newcombe(wilson(tp, npos), wilson(fp, nneg))
    assert lo > 0.7, (tp, npos, fp, nneg)
    tp, npos, fp, nneg = content_attack(sealed, y, 0)
    lo, _ = newcombe(wilson(tp, npos), wilson(fp, nneg))
    assert lo <= 0


def test_tpsi_opened_real_and_synthetic_vouchers_look_alike(data):
    from e2eebench.evaluation.leakage.counting import below_threshold
    run = run_scheme("tpsi-ad", data, params={"synthetic_rate": 0.3})
    m = next(m for m in below_threshold(run, data, accounts=20) if m.metric == "synthetic_distinguish_advantage")
    assert m.n > 40 and m.params["positives"] >= 5, m
    assert m.ci_low <= 0 and not exceeds_declaration(m, SCHEMES["tpsi-ad"]), m
