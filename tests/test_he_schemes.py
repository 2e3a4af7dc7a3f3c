"""HE schemes: boundary cases against plaintext matching, key placements, bench and CLI.

Boundary cases are (query, list entry) pairs at Hamming distance exactly tau, tau - 1 (inside)
and tau + 1 (outside). One BFV evaluation computes the threshold test for every list entry in
its own slot; the test reads each entry's slot (provider-secret layout via ``slot_order``,
decrypted slots via the key holder: a test-only view -- the scheme itself only releases the
aggregated verdict) and compares zero / non-zero with ``d <= tau`` computed in plaintext.
"""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher
from e2eebench.evaluation.bench.he import extrapolate, fit_blocks
from e2eebench.evaluation.cli.he import parse_sizes
from e2eebench.protocols.channel import PROVIDER, THIRD_PARTY, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.crypto_he import (BfvParams, HammingKeyHolder, HammingMatcher,
                                           HammingQueryEncryptor, device_bundle_of)
from e2eebench.protocols.errors import ConfigError, MalformedMessage
from e2eebench.protocols.he import PDQ_EQUIVALENT_SIMILARITY, HeCosine, HeHamming, HeHamming3p

TAU = 31


def _at(rng: np.random.Generator, x: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(x)
    bits[rng.choice(bits.size, size=k, replace=False)] ^= 1
    return np.packbits(bits)


def _hd(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(y, x)).sum(axis=1)


def _ctx(mid: str = "m1", account: str = "acct-0000") -> MessageContext:
    return MessageContext(mid, account, Channel(Ledger()), PartyClock(), np.random.default_rng(5))


# ------------------------------------------------------------------------------- fast


def test_scheme_metadata_and_params():
    pdq = get_hasher("pdq")
    assert HeHamming(pdq).p["key_holder"] == "device" and HeHamming.matching == "fuzzy"
    assert HeHamming3p(pdq).p["key_holder"] == "third-party"
    assert HeCosine.matching == "approximate" and HeCosine.family == "he"
    assert abs(PDQ_EQUIVALENT_SIMILARITY - np.cos(np.pi * 31 / 256)) < 1e-4
    with pytest.raises(ConfigError, match="key_holder"):
        HeHamming(pdq, key_holder="cloud")
    with pytest.raises(ConfigError, match="similarity"):
        HeCosine(pdq, similarity=1.5)


def test_device_bundle_rejects_garbage():
    pdq = get_hasher("pdq")
    s = HeHamming3p(pdq)
    for bad in (b"", b"HEH1garbage", b"HEH1\x00\x05" + bytes(40)):
        with pytest.raises(MalformedMessage):
            s.device_load(bad, "acct-0000", _ctx("bundle"))


def test_bench_fit_and_extrapolation_are_labelled():
    a, b = fit_blocks([(1, 2300.0), (2, 4500.0), (7, 15500.0)])
    assert 2100 < b < 2300 and abs(a + b - 2300) < 200
    row = {"engine": "he-hamming", "key_holder": "device", "list_size": 100_000, "blocks": 7,
           "result_ciphertexts": 1, "result_bytes": 224_000, "provider_ms": 15500.0, "encrypt_ms": 9.0,
           "decrypt_ms": 2.5, "device_ms": 11.5, "third_party_ms": 0.0, "label": "measured", "n_queries": 1}
    small = {**row, "list_size": 100, "blocks": 1, "provider_ms": 2300.0}
    out = extrapolate([small, row])
    assert [r["list_size"] for r in out] == [10**6, 10**7]
    assert all(r["label"] == "extrapolated" for r in out)
    assert out[0]["blocks"] == 62 and out[0]["result_ciphertexts"] == 4
    assert out[0]["result_bytes"] == 4 * 224_000
    with pytest.raises(ConfigError):
        parse_sizes("10,abc")
    with pytest.raises(ConfigError):
        parse_sizes("0")


# ------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_boundary_cases_equal_plaintext_matching():
    """2,010 (query, entry) pairs at tau - 1, tau, tau + 1: zero mismatches allowed."""
    params = BfvParams(threshold=TAU)
    holder = HammingKeyHolder(params)
    bundle = holder.public_bundle()
    pk_enc = HammingQueryEncryptor(device_bundle_of(bundle), params)
    rng = np.random.default_rng(11)
    cases = mismatches = 0
    for q_idx in range(2):
        x = rng.integers(0, 256, 32, dtype=np.uint8)
        dists = np.repeat([TAU - 1, TAU, TAU + 1], 335)
        y = np.stack([_at(rng, x, int(k)) for k in dists])
        truth = _hd(y, x) <= TAU
        assert np.array_equal(_hd(y, x), dists)  # the placement itself is right
        matcher = HammingMatcher(bundle, y, params, rng)
        query = holder.encrypt_query(x) if q_idx == 0 else pk_enc.encrypt_query(x)
        result = matcher.evaluate(query)
        slots = holder.decrypt_slots(result)
        order = matcher.slot_order()
        real = order >= 0
        got = np.zeros(len(y), dtype=bool)
        got[order[real]] = slots[real] == 0
        cases += len(y)
        mismatches += int(np.count_nonzero(got != truth))
        assert not np.any(slots[~real] == 0)  # padding never matches
        detail = holder.decrypt_detail(result)
        assert detail.match and detail.zero_slots == int(truth.sum()) and detail.min_noise_budget > 0
    assert cases >= 1000 and mismatches == 0


@pytest.mark.slow
def test_verdict_at_inside_and_outside_the_threshold():
    """The aggregated verdict when the nearest entry sits at tau - 1, tau or tau + 1."""
    params = BfvParams(threshold=TAU)
    holder = HammingKeyHolder(params)
    rng = np.random.default_rng(12)
    x = rng.integers(0, 256, 32, dtype=np.uint8)
    for nearest, expect in ((TAU - 1, True), (TAU, True), (TAU + 1, False)):
        y = np.stack([_at(rng, x, nearest)] + [_at(rng, x, int(k)) for k in rng.integers(TAU + 1, 200, 20)])
        assert (_hd(y, x).min() <= TAU) == expect
        matcher = HammingMatcher(holder.public_bundle(), y, params, rng)
        assert holder.decrypt_verdict(matcher.evaluate(holder.encrypt_query(x))) is expect


@pytest.mark.slow
@pytest.mark.parametrize("cls", [HeHamming, HeHamming3p])
def test_scheme_roles_give_the_plaintext_verdict_to_the_provider(cls):
    from e2eebench.server.database import KnownHashDatabase
    pdq = get_hasher("pdq")
    rng = np.random.default_rng(13)
    x = rng.integers(0, 256, 32, dtype=np.uint8)
    db = KnownHashDatabase(["a", "b"], {"pdq": np.stack([_at(rng, x, TAU), _at(rng, x, 100)])})
    scheme = cls(pdq)
    setup = _ctx("setup", PROVIDER)
    pstate, bundle = scheme.provider_setup(db, setup)
    dstate = scheme.device_load(bundle, "acct-0000", _ctx("bundle"))
    scheme.query_value = lambda image: image  # feed hashes directly (the hasher is tested elsewhere)
    for mid, h, expect in (("m1", x, True), ("m2", _at(rng, x, 70), False)):
        ctx = _ctx(mid)
        scheme.connect(ctx.channel, pstate, lambda account: dstate)
        payload = scheme.device_prepare(dstate, h, ctx).payload
        scheme.provider_receive(pstate, payload, ctx)
        verdicts = {(v.party, v.value) for v in ctx.ledger.learned if v.kind == "verdict"}
        assert (PROVIDER, expect) in verdicts
        key_holder = THIRD_PARTY if cls is HeHamming3p else "device"
        assert (key_holder, expect) in verdicts
        sent = {t.label for t in ctx.channel.transfers}
        # the result goes to the key holder and a verdict comes back, both on the channel
        assert "he result" in sent and ({"he verdict", "he result:response"} & sent)
        with pytest.raises(Exception) as e:  # the same sealed payload again is a replay
            scheme.provider_receive(pstate, payload, ctx)
        assert type(e.value).__name__ == "ReplayError"


@pytest.mark.slow
def test_bench_and_cli_store_measured_and_extrapolated(tmp_path):
    from e2eebench.evaluation.cli.app import main
    from e2eebench.evaluation.run.store import ResultStore
    db, png = tmp_path / "r.duckdb", tmp_path / "he.png"
    assert main(["bench", "he", "--sizes", "100", "--queries", "1", "--engines", "he-cosine",
                 "--db", str(db), "--plot", str(png), "--format", "json"]) == 0
    with ResultStore(db) as st:
        df = st.measurements(st.resolve("latest", command="bench he"))
    assert set(df["label"]) == {"measured", "extrapolated"}
    assert png.stat().st_size > 1000
    assert main(["bench", "he", "--sizes", "x"]) == 2


def test_verdict_report_that_is_not_an_object_is_malformed():
    import json

    from e2eebench.protocols.crypto import KeyPair, seal
    from e2eebench.protocols.he import VERDICT_INFO
    scheme = HeHamming(get_hasher("pdq"))
    rng = np.random.default_rng(0)
    keys = KeyPair.generate(rng.bytes)
    ctx = MessageContext("m1", "acct-0", Channel(Ledger()), PartyClock(), rng)
    for body in ([1, 2], "x", 3):
        sealed = seal(keys.public_bytes, json.dumps(body).encode(), info=VERDICT_INFO, ad=ctx.binding(),
                      random_bytes=rng.bytes)
        with pytest.raises(MalformedMessage):
            scheme._open_verdict({"prov": keys}, sealed, ctx)
