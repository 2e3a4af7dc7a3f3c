"""The device-related schemes: Bloom filters on the device, hash upload and partial hashing."""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher
from e2eebench.evaluation.data.corpora import get_corpus
from e2eebench.evaluation.run.stats import wilson
from e2eebench.evaluation.data.transforms import parse_transform
from e2eebench.protocols.channel import PROVIDER, Channel, MessageContext, PartyClock
from e2eebench.protocols.crypto import seal
from e2eebench.protocols.errors import (AuthenticationFailed, ConfigError, MalformedMessage,
                                        ProtocolError)
from e2eebench.protocols.hashupload import HASH_INFO, PARTIAL_INFO, complete_hash
from e2eebench.protocols.ondevice import bloom_from_bytes, bloom_to_bytes, hash_chunks
from e2eebench.protocols.registry import scheme_class
from e2eebench.server.database import KnownHashDatabase

PDQ = get_hasher("pdq")


def ctx(mid: str = "m1", account: str = "acct-a", seed: int = 0) -> MessageContext:
    return MessageContext(mid, account, Channel(), PartyClock(), np.random.default_rng(seed))


@pytest.fixture(scope="module")
def case():
    """Known items, their edits and unrelated images (small: 64 px renders)."""
    items = get_corpus("dead-leaves", seed=11, size=128).items(24)
    known, benign = items[:12], items[12:]
    db = KnownHashDatabase.from_images(known, [PDQ])
    edits = [parse_transform(s) for s in ("jpeg:q=50", "resize:0.5", "identity")]
    probes = [e.apply(it.image, seed=i) for i, it in enumerate(known) for e in edits[i % 3:i % 3 + 1]]
    probes += [it.image for it in benign]
    return db, probes


def _setup(name: str, db, **params):
    s = scheme_class(name)(PDQ, **params)
    pstate, bundle = s.provider_setup(db, ctx("setup"))
    return s, pstate, bundle, s.device_load(bundle, "acct-a", ctx("bundle"))


def _provider_verdict(s, pstate, dstate, image, mid: str) -> bool:
    c = ctx(mid)
    prep = s.device_prepare(dstate, image, c)
    s.provider_receive(pstate, prep.payload, c)
    v = [x.value for x in c.ledger.learned_by(PROVIDER, "verdict")]
    return bool(v and v[-1])


# -- Bloom filters -----------------------------------------------------------------------------
@pytest.mark.parametrize("fpr", [0.01, 0.05])
def test_bloom_measured_fpr_within_wilson_interval(fpr):
    s = scheme_class("on-device-bloom")(PDQ, fpr=fpr)
    rng = np.random.default_rng(7)
    n = 2000
    db = KnownHashDatabase([f"k{i}" for i in range(n)], {"pdq": rng.integers(0, 256, (n, 32), dtype=np.uint8)})
    pstate, bundle = s.provider_setup(db, ctx("setup"))
    bf = s.device_load(bundle, "a", ctx("b"))["filter"]
    queries = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    assert not {q.tobytes() for q in queries} & {h.tobytes() for h in db.hashes["pdq"]}
    k = sum(q.tobytes() in bf for q in queries)
    e = wilson(k, len(queries))
    assert e.ci_low <= fpr <= e.ci_high, (k, e)
    assert all(h.tobytes() in bf for h in db.hashes["pdq"])  # never a false negative


def test_bloom_verdicts_equal_exact_matching(case):
    db, probes = case
    s, pstate, _, dstate = _setup("on-device-bloom", db)
    for i, im in enumerate(probes):
        got = _provider_verdict(s, pstate, dstate, im, f"m{i}")
        assert got == s.plaintext_match(db, PDQ.hash(im))


def test_lsh_bloom_equals_plain_chunk_rule_and_pigeonhole(case):
    db, probes = case
    hs = db.hashes["pdq"]
    for chunks, min_hits in ((32, 1), (16, 2)):
        s, pstate, _, dstate = _setup("on-device-lsh-bloom", db, chunks=chunks, min_hits=min_hits)
        w = 32 // chunks
        for i, im in enumerate(probes):
            h = PDQ.hash(im)
            # plain rule computed without the filter: chunk j of h equals chunk j of some entry
            eq = (hs.reshape(len(hs), chunks, w) == h.reshape(chunks, w)).all(-1).any(0)
            got = _provider_verdict(s, pstate, dstate, im, f"m{i}")
            assert got == (int(eq.sum()) >= min_hits)
            if chunks == 32 and s.plaintext_match(db, h):
                assert got  # pigeonhole: d <= 31 leaves one of 32 byte chunks intact


def test_lsh_bloom_recall_and_fpr_measured(case):
    db, probes = case
    s, _, _, dstate = _setup("on-device-lsh-bloom", db)
    known = [s.plaintext_match(db, PDQ.hash(im)) for im in probes]
    hit = [len(s.chunk_hits(dstate["filter"], PDQ.hash(im))) >= s.p["min_hits"] for im in probes]
    tp = sum(h and k for h, k in zip(hit, known))
    fp = sum(h and not k for h, k in zip(hit, known))
    r, f = wilson(tp, sum(known)), wilson(fp, len(known) - sum(known))
    assert sum(known) > 0 and r.n > 0 and f.n > 0
    assert 0 <= f.value <= r.value <= 1


def test_chunks_are_byte_slices_keyed_by_position():
    h = np.arange(32, dtype=np.uint8)
    ks = hash_chunks(h, 8)
    assert len(ks) == 8 and ks[1] == bytes([1]) + bytes(range(4, 8))


def test_bloom_bundle_tampering_is_typed(case):
    db, _ = case
    for name in ("on-device-bloom", "on-device-lsh-bloom", "hash-upload", "partial-hash"):
        s, _, bundle, _ = _setup(name, db)
        for bad in (bundle[:-1], bundle[:40], bundle[:-5] + bytes([bundle[-5] ^ 1]) + bundle[-4:],
                    bundle[:30] + bytes([bundle[30] ^ 0x10]) + bundle[31:]):
            with pytest.raises((MalformedMessage, AuthenticationFailed)):
                s.device_load(bad, "a", ctx("b"))


def test_bloom_header_inconsistent_with_bits():
    s = scheme_class("on-device-bloom")(PDQ)
    bf = s.build_filter(np.arange(96, dtype=np.uint8).reshape(3, 32))
    raw = bloom_to_bytes(bf)
    assert bloom_from_bytes(raw).count == 3
    for bad in (raw[:-1], raw[:10], raw + b"\x00"):
        with pytest.raises(MalformedMessage):
            bloom_from_bytes(bad)


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError):
        scheme_class("on-device-bloom")(PDQ, fpr=1.5)
    with pytest.raises(ConfigError):
        scheme_class("on-device-lsh-bloom")(PDQ, min_hits=0)
    with pytest.raises(ConfigError):
        scheme_class("on-device-lsh-bloom")(PDQ, chunks=12)
    with pytest.raises(ConfigError):
        scheme_class("partial-hash")(get_hasher("dhash"))


# -- hash upload / partial hashing -------------------------------------------------------------
@pytest.mark.parametrize("name,params", [("hash-upload", {}), ("partial-hash", {}),
                                         ("partial-hash", {"quant": "float16"})])
def test_provider_verdicts_equal_plaintext_fuzzy(case, name, params):
    db, probes = case
    s, pstate, _, dstate = _setup(name, db, **params)
    verdicts = [_provider_verdict(s, pstate, dstate, im, f"m{i}") for i, im in enumerate(probes)]
    expect = [s.plaintext_match(db, PDQ.hash(im)) for im in probes]
    assert verdicts == expect and any(expect) and not all(expect)


def test_completed_hash_equals_pdq_bit_for_bit(case):
    _, probes = case
    s32 = scheme_class("partial-hash")(PDQ)
    assert s32.p["quant"] == "float32"
    for im in probes:
        f = PDQ.features(im)
        assert np.array_equal(complete_hash(f), PDQ.hash(im))
        wire_f = s32.decode_features(s32.encode_features(f))
        assert np.array_equal(wire_f, f)  # the default wire form is lossless
        assert np.array_equal(complete_hash(wire_f), PDQ.hash(im))


def test_partial_hash_provider_learns_intermediate_and_hash(case):
    db, probes = case
    s, pstate, _, dstate = _setup("partial-hash", db)
    c = ctx("m9")
    prep = s.device_prepare(dstate, probes[0], c)
    assert len(prep.payload) == 32 + 256 * 4 + 16  # ephemeral key + float32 block + tag
    s.provider_receive(pstate, prep.payload, c)
    kinds = {x.kind for x in c.ledger.learned_by(PROVIDER)}
    assert {"intermediate", "hash", "verdict"} <= kinds


@pytest.mark.parametrize("name", ["hash-upload", "partial-hash"])
def test_malformed_payloads_raise_typed_errors(case, name):
    db, probes = case
    s, pstate, bundle, dstate = _setup(name, db)
    prep = s.device_prepare(dstate, probes[0], ctx("m1"))
    p = prep.payload
    for bad in (p[:10], p[:-1], p[:40] + bytes([p[40] ^ 1]) + p[41:], b"\x00" * len(p)):
        with pytest.raises(ProtocolError):
            s.provider_receive(pstate, bad, ctx("m1"))
    with pytest.raises(AuthenticationFailed):  # moved to another message: bound by the AD
        s.provider_receive(pstate, p, ctx("m2"))
    key = dstate["provider_key"]
    info = HASH_INFO if name == "hash-upload" else PARTIAL_INFO
    ad = b"acct-a\x00m3"
    with pytest.raises(MalformedMessage):  # authentic box, wrong inner length
        s.provider_receive(pstate, seal(key, b"\x01" * 31, info=info, ad=ad), ctx("m3"))
    if name == "partial-hash":
        nan = np.full(256, np.nan, np.float32).tobytes()
        with pytest.raises(MalformedMessage):
            s.provider_receive(pstate, seal(key, nan, info=info, ad=ad), ctx("m3"))
    s.provider_receive(pstate, b"", ctx("m4"))  # text-only message: nothing learned


# -- bundle bench ------------------------------------------------------------------------------
def test_bench_bundle_empty_filter_size_equals_built_bundle():
    """Above measure_max the Bloom rows use an empty filter of the right capacity; that must be
    the very size the scheme's own setup produces at that list size."""
    from e2eebench.evaluation.bench.device import bench_bundle
    small = {(r["scheme"], r["list_size"]): r
             for r in bench_bundle([300, 1200], measure_max=1200, psi_max=0, n_timing=2)}
    big = {(r["scheme"], r["list_size"]): r
           for r in bench_bundle([300, 1200], measure_max=300, psi_max=0, n_timing=0)}
    assert small[("hash-upload", 1200)]["timing_n"] == 2 and small[("hash-upload", 1200)]["provider_ms"] > 0
    for name in ("on-device-bloom", "on-device-lsh-bloom", "hash-upload", "partial-hash"):
        assert big[(name, 1200)]["bundle_label"] != "measured"
        assert big[(name, 1200)]["bundle_bytes"] == small[(name, 1200)]["bundle_bytes"], name
    assert small[("on-device-list", 1200)]["bundle_bytes"] > 32 * 1200
    assert big[("on-device-list", 1200)]["bundle_bytes"] == small[("on-device-list", 1200)]["bundle_bytes"]
    assert small[("hash-upload", 1200)]["update_bytes"] == 0
    with pytest.raises(ConfigError):
        bench_bundle([0])


def test_cli_option_parsers_raise_config_errors():
    from e2eebench.evaluation.cli.device import parse_configs, parse_sizes
    assert parse_sizes("1000, 1e4") == [1000, 10000]
    assert parse_configs("8:1,16:2") == [(8, 1), (16, 2)]
    for bad in ("", "abc", "0", "1.5"):
        with pytest.raises(ConfigError):
            parse_sizes(bad)
    for bad in ("", "8", "8:x"):
        with pytest.raises(ConfigError):
            parse_configs(bad)


@pytest.mark.parametrize("name", ["hash-upload", "partial-hash"])
def test_sealed_payload_resent_is_a_replay(name):
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.protocols.errors import ReplayError
    from e2eebench.protocols.registry import scheme_class
    from e2eebench.server.database import KnownHashDatabase
    from e2eebench.clientside.hashing import get_hasher
    items = get_corpus("dead-leaves", size=128).items(3)
    hasher = get_hasher("pdq")
    db = KnownHashDatabase.from_images(items[:2], [hasher])
    scheme = scheme_class(name)(hasher)
    mk = lambda mid: MessageContext(mid, "acct-1", Channel(), PartyClock(), np.random.default_rng(1))
    pstate, bundle = scheme.provider_setup(db, mk("setup"))
    dstate = scheme.device_load(bundle, "acct-1", mk("bundle"))
    payload = scheme.device_prepare(dstate, items[0].image, mk("m1")).payload
    scheme.provider_receive(pstate, payload, mk("m1"))
    with pytest.raises(ReplayError):
        scheme.provider_receive(pstate, payload, mk("m1"))
