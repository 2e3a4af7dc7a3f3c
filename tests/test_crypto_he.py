"""BFV Hamming and CKKS similarity engines: exact verdicts, layout, malformed bytes."""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.protocols.crypto_he import (
    BfvParams,
    CkksKeyHolder,
    CkksMatcher,
    CkksParams,
    HammingKeyHolder,
    HammingMatcher,
    HammingQueryEncryptor,
    unit_normalise,
)
from e2eebench.protocols.errors import ConfigError, InputError, MalformedMessage

TAU = 31


def _at_distance(rng: np.random.Generator, x: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(x)
    bits[rng.choice(bits.size, size=k, replace=False)] ^= 1
    return np.packbits(bits)


def _hd(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(y, x)).sum(axis=1)


@pytest.fixture(scope="module")
def bfv_holder() -> HammingKeyHolder:
    return HammingKeyHolder(BfvParams())


# ----------------------------------------------------------------------------- BFV, fast


def test_bfv_params_reject_unsupported_values():
    with pytest.raises(ConfigError, match="poly_degree"):
        BfvParams(poly_degree=8192)
    with pytest.raises(ConfigError, match="threshold"):
        BfvParams(threshold=256)
    with pytest.raises(ConfigError, match="group_blocks"):
        BfvParams(group_blocks=BfvParams().max_group_blocks() + 1)
    assert BfvParams.for_list_size(10**7).group() >= 1


def test_bfv_malformed_bytes_raise_typed_errors(bfv_holder):
    bundle = bfv_holder.public_bundle()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (10, 32), dtype=np.uint8)
    for bad in (b"", b"garbage", bundle[:-1], bundle[:5000] + bytes(100) + bundle[5100:]):
        with pytest.raises(MalformedMessage):
            HammingMatcher(bad, y, BfvParams(), rng)
    matcher = HammingMatcher(bundle, y, BfvParams(), rng)
    query = bfv_holder.encrypt_query(y[0])
    for bad in (b"", query[:-3], query[:2000] + bytes(64) + query[2064:], bundle):
        with pytest.raises(MalformedMessage):
            matcher.evaluate(bad)
    with pytest.raises(MalformedMessage):
        bfv_holder.decrypt_verdict(query[:100])
    with pytest.raises(InputError):
        bfv_holder.encrypt_query(np.zeros(31, dtype=np.uint8))
    with pytest.raises(InputError):
        HammingMatcher(bundle, y[:, :16], BfvParams(), rng)


# ----------------------------------------------------------------------------- BFV, slow


@pytest.mark.slow
def test_bfv_zero_slots_are_exactly_the_entries_within_threshold(bfv_holder):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, 32, dtype=np.uint8)
    y = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    planted = {5: TAU, 17: TAU - 1, 33: TAU + 1, 60: 0, 99: 256, 120: TAU + 2}
    for i, k in planted.items():
        y[i] = _at_distance(rng, x, k)
    matcher = HammingMatcher(bfv_holder.public_bundle(), y, BfvParams(), rng)
    assert matcher.blocks == 1
    for query in (bfv_holder.encrypt_query(x),
                  HammingQueryEncryptor(bfv_holder.public_bundle()).encrypt_query(x)):
        result = matcher.evaluate(query)
        slots = bfv_holder.decrypt_slots(result)
        order = matcher.slot_order()
        expected = np.zeros(slots.size, dtype=bool)
        real = order >= 0
        expected[real] = _hd(y[order[real]], x) <= TAU
        np.testing.assert_array_equal(slots == 0, expected)
        assert expected.sum() >= 3  # the entries at 0, tau-1, tau
        assert bfv_holder.decrypt_verdict(result) is True
    # only entries just outside the threshold (and far away): no match
    far = np.stack([_at_distance(rng, x, k) for k in (TAU + 1, TAU + 1, 256, 200)])
    m2 = HammingMatcher(bfv_holder.public_bundle(), far, BfvParams(), rng)
    detail = bfv_holder.decrypt_detail(m2.evaluate(bfv_holder.encrypt_query(x)))
    assert not detail.match and detail.zero_slots == 0 and detail.min_noise_budget > 0


@pytest.mark.slow
def test_bfv_several_blocks_aggregate_by_slot():
    params = BfvParams(group_blocks=2)
    holder = HammingKeyHolder(params)
    rng = np.random.default_rng(2)
    n = 2 * params.slots + 100  # three blocks: a group of two, then a group of one
    y = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    x = rng.integers(0, 256, 32, dtype=np.uint8)
    for i, k in ((7, TAU), (20000, 3), (n - 1, 0), (30000, TAU + 1)):
        y[i] = _at_distance(rng, x, k)
    matcher = HammingMatcher(holder.public_bundle(), y, params, rng)
    result = matcher.evaluate(holder.encrypt_query(x))
    detail = holder.decrypt_detail(result)
    assert detail.ciphertexts == 2 and detail.min_noise_budget > 0
    order = matcher.slot_order().reshape(3, params.slots)
    hit = np.zeros(order.shape, dtype=bool)
    hit[order >= 0] = _hd(y[order[order >= 0]], x) <= TAU
    expected = np.concatenate([hit[0] | hit[1], hit[2]])
    np.testing.assert_array_equal(holder.decrypt_slots(result) == 0, expected)
    assert detail.zero_slots == expected.sum() >= 1


# ---------------------------------------------------------------------------------- CKKS


@pytest.fixture(scope="module")
def ckks_holder() -> CkksKeyHolder:
    return CkksKeyHolder(CkksParams(threshold=0.9))


def test_ckks_verdict_and_error_against_plaintext_cosine(ckks_holder):
    params = ckks_holder.params
    rng = np.random.default_rng(3)
    feats = unit_normalise(rng.standard_normal((300, params.dim)))
    x = rng.standard_normal(params.dim)
    u = unit_normalise(x)
    # one entry just above, one just below the threshold, built on the query's direction
    orth = rng.standard_normal(params.dim)
    orth = unit_normalise(orth - (orth @ u) * u)
    for i, c in ((10, 0.95), (11, 0.85)):
        feats[i] = c * u + np.sqrt(1 - c * c) * orth
    matcher = CkksMatcher(ckks_holder.public_bundle(), feats, params, rng)
    q = ckks_holder.encrypt_query(x)
    masked = ckks_holder.decrypt_values(matcher.evaluate(q))
    order = matcher.slot_order()
    sims = feats @ u
    real = order >= 0
    np.testing.assert_array_equal(masked[real] > 0, sims[order[real]] > params.threshold)
    assert not np.any(masked[~real] > 0)
    raw = ckks_holder.decrypt_values(matcher.evaluate(q, mask=False))
    order = matcher.slot_order()
    assert np.abs(raw[order >= 0] - sims[order[order >= 0]]).max() < 1e-4
    assert ckks_holder.decrypt_verdict(matcher.evaluate(q)) is True
    feats[10] = feats[11]
    assert ckks_holder.decrypt_verdict(CkksMatcher(ckks_holder.public_bundle(), feats, params, rng).evaluate(q)) is False


def test_ckks_malformed_bytes_raise_typed_errors(ckks_holder):
    params = ckks_holder.params
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((5, params.dim))
    bundle = ckks_holder.public_bundle()
    for bad in (b"", bundle[:-1], bundle[:3000] + bytes(50) + bundle[3050:]):
        with pytest.raises(MalformedMessage):
            CkksMatcher(bad, feats, params, rng)
    matcher = CkksMatcher(bundle, feats, params, rng)
    q = ckks_holder.encrypt_query(feats[0])
    for bad in (q[:-1], q[:1000] + bytes(40) + q[1040:], b"E2HCKKq1"):
        with pytest.raises(MalformedMessage):
            matcher.evaluate(bad)
    with pytest.raises(InputError):
        ckks_holder.encrypt_query(np.zeros(params.dim))


def test_device_bundles_carry_only_the_public_key(bfv_holder, ckks_holder):
    from e2eebench.protocols.crypto_he import CkksQueryEncryptor, device_bundle_of
    full = bfv_holder.public_bundle()
    dev = device_bundle_of(full)
    assert len(dev) < len(full) // 10  # no relinearization or Galois keys
    HammingQueryEncryptor(dev)  # parses
    for bad in (dev[:-5], dev[:20], b"E2HBFVdv" + dev[8:100]):
        with pytest.raises(MalformedMessage):
            HammingQueryEncryptor(bad)
    # CKKS: a public-key query evaluates like a secret-key one
    params = ckks_holder.params
    rng = np.random.default_rng(4)
    feats = unit_normalise(rng.standard_normal((50, params.dim)))
    matcher = CkksMatcher(ckks_holder.public_bundle(), feats, params, rng)
    x = feats[7] + 0.01 * rng.standard_normal(params.dim)
    enc = CkksQueryEncryptor(device_bundle_of(ckks_holder.public_bundle()), params)
    raw = ckks_holder.decrypt_values(matcher.evaluate(enc.encrypt_query(x), mask=False))
    order = matcher.slot_order()
    real = order >= 0
    assert np.abs(raw[real] - feats[order[real]] @ unit_normalise(x)).max() < 1e-5
