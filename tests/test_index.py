"""Matching indexes: MIH and the linear scan must return exactly the brute-force set.

The brute force here is computed independently with ``np.unpackbits`` (no popcount, no index
code), so a bug shared by the indexes' Hamming helper would still be caught.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from e2eebench.protocols.errors import ConfigError, InputError, UnknownNameError
from e2eebench.server.index import (
    ExactIndex,
    LinearScanIndex,
    Match,
    MultiIndexHashIndex,
    get_index,
)


def brute(db: np.ndarray, q: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    d = (np.unpackbits(db, axis=1) != np.unpackbits(q)[None, :]).sum(axis=1)
    ids = np.flatnonzero(d <= threshold)
    return ids, d[ids]


def flip(rng: np.random.Generator, h: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(h)
    bits[rng.choice(bits.size, size=k, replace=False)] ^= 1
    return np.packbits(bits)


def make_db(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """Random hashes plus a few planted near-duplicates and an exact duplicate, so thresholds
    below the random-pair distance still have matches to find."""
    db = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    for i in range(1, min(n, 12)):
        db[i] = flip(rng, db[0], int(rng.integers(0, 8 * nbytes // 4)))
    if n > 20:
        db[20] = db[0]
    return db


def assert_same(m: Match, ids: np.ndarray, dists: np.ndarray) -> None:
    assert m.ids.dtype == np.int64 and m.distances.dtype == np.int32
    np.testing.assert_array_equal(m.ids, ids)
    np.testing.assert_array_equal(m.distances, dists)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nbytes=st.sampled_from([8, 32]),
    n=st.integers(1, 2000),
    threshold=st.integers(0, 64),
    near_bits=st.integers(0, 64),
    seed=st.integers(0, 2**32 - 1),
    chunks=st.one_of(st.none(), st.integers(2, 24)),
)
def test_mih_equals_linear_equals_brute(nbytes, n, threshold, near_bits, seed, chunks):
    rng = np.random.default_rng(seed)
    db = make_db(rng, n, nbytes)
    bits = 8 * nbytes
    if chunks is not None:
        chunks = max(-(-bits // 32), min(chunks, bits))
    lin = LinearScanIndex(db)
    # Forced MIH (no fallback) exercises the pigeonhole path at every threshold; the default
    # one may fall back to the scan and must agree as well.
    forced = MultiIndexHashIndex(db, threshold=threshold, chunks=chunks, linear_fallback=False)
    assume(forced.probe_count(threshold) <= 1 << 14)  # keep the forced enumeration quick
    auto = get_index("mih", db, threshold=min(threshold, 31))
    queries = [
        db[int(rng.integers(n))],
        flip(rng, db[int(rng.integers(n))], min(near_bits, bits)),
        rng.integers(0, 256, size=nbytes, dtype=np.uint8),
    ]
    for q in queries:
        ids, dists = brute(db, q, threshold)
        assert_same(lin.query(q, threshold), ids, dists)
        assert_same(forced.query(q, threshold), ids, dists)
        assert_same(auto.query(q, threshold), ids, dists)
    d_all = (np.unpackbits(db, axis=1) != np.unpackbits(queries[1])[None, :]).sum(axis=1)
    expect = (int(np.argmin(d_all)), int(d_all.min()))
    assert lin.nearest(queries[1]) == expect
    assert forced.nearest(queries[1]) == expect
    assert auto.nearest(queries[1]) == expect


@settings(max_examples=40, deadline=None)
@given(
    nbytes=st.sampled_from([8, 32]),
    threshold=st.integers(0, 64),
    chunks=st.integers(2, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_mih_finds_pigeonhole_edge_cases(nbytes, threshold, chunks, seed):
    """Worst case for the pigeonhole bound: every chunk differs in exactly floor(T/m) bits
    (the leftover T mod m bits go to random chunks), so no chunk is closer than the radius."""
    rng = np.random.default_rng(seed)
    bits = 8 * nbytes
    chunks = max(-(-bits // 32), min(chunks, bits))
    db = rng.integers(0, 256, size=(300, nbytes), dtype=np.uint8)
    probe = MultiIndexHashIndex(db, chunks=chunks, linear_fallback=False)
    assume(probe.probe_count(threshold) <= 1 << 14)  # keep the forced enumeration quick
    radius = threshold // chunks
    starts = np.cumsum([0] + probe.widths[:-1])
    pos: list[int] = []
    for s, w in zip(starts, probe.widths):
        pos += list(s + rng.choice(w, size=min(radius, w), replace=False))
    rest = np.setdiff1d(np.arange(bits), pos)
    pos += list(rng.choice(rest, size=min(threshold - len(pos), rest.size), replace=False))
    target = int(rng.integers(300))
    qbits = np.unpackbits(db[target])
    qbits[pos] ^= 1
    q = np.packbits(qbits)
    ids, dists = brute(db, q, threshold)
    assert target in ids
    assert_same(probe.query(q, threshold), ids, dists)
    assert probe.nearest(q) == LinearScanIndex(db).nearest(q)


def test_mih_large_thresholds_fall_back_and_stay_exact():
    rng = np.random.default_rng(7)
    db = make_db(rng, 1500, 32)
    mih = MultiIndexHashIndex(db)
    q = flip(rng, db[3], 40)
    for t in (64, 100, 128, 200, 256):
        assert mih.uses_scan(t)
        assert_same(mih.query(q, t), *brute(db, q, t))


def test_forced_mih_refuses_huge_enumeration():
    db = np.random.default_rng(2).integers(0, 256, size=(10, 8), dtype=np.uint8)
    forced = MultiIndexHashIndex(db, chunks=2, linear_fallback=False)
    assert forced.probe_count(64) > 1 << 22
    with pytest.raises(ConfigError):
        forced.query(db[0], 64)
    assert forced.nearest(db[4]) == (4, 0)


def test_query_many_matches_query():
    rng = np.random.default_rng(3)
    db = make_db(rng, 500, 32)
    qs = np.stack([flip(rng, db[i], 10) for i in range(5)])
    for name in ("linear", "mih"):
        idx = get_index(name, db)
        for q, m in zip(qs, idx.query_many(qs, 20)):
            assert_same(m, *brute(db, q, 20))


@pytest.mark.parametrize("threshold", [0, 5, 31, 40])
def test_mih_batched_queries_equal_single_queries_on_clustered_data(threshold):
    """The batched path sorts (query, id) pairs and drops repeats across chunks; each row
    must equal the single query and the brute force, empty answers included."""
    rng = np.random.default_rng(threshold + 100)
    db = clustered_db(rng, 4000)
    mih = MultiIndexHashIndex(db, threshold=31, chunks=16, linear_fallback=False)
    qs = np.stack([flip(rng, db[int(i)], int(k)) for i, k in zip(rng.integers(0, 4000, 12), range(0, 48, 4))]
                  + list(rng.integers(0, 256, size=(4, 32), dtype=np.uint8)))
    many = mih.query_many(qs, threshold)
    assert len(many) == len(qs) and any(len(m) == 0 for m in many)
    assert sum(len(m) for m in many) > (len(qs) if threshold >= 31 else 0)
    for q, m in zip(qs, many):
        assert_same(m, *brute(db, q, threshold))
    assert mih.query_many(qs[:0], threshold) == []


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), nbytes=st.sampled_from([1, 8, 32]), seed=st.integers(0, 2**32 - 1))
def test_exact_index_is_set_membership(n, nbytes, seed):
    rng = np.random.default_rng(seed)
    db = rng.integers(0, 4, size=(n, nbytes), dtype=np.uint8)  # small alphabet: duplicates
    idx = ExactIndex(db)
    rows = [bytes(r) for r in db]
    probes = [db[int(rng.integers(n))], rng.integers(0, 4, size=nbytes, dtype=np.uint8)]
    for q in probes:
        expect = np.array([i for i, r in enumerate(rows) if r == bytes(q)], dtype=np.int64)
        m = idx.query(q, 0)
        np.testing.assert_array_equal(m.ids, expect)
        assert (m.distances == 0).all()
    for q, m in zip(probes, idx.query_many(np.stack(probes), 0)):
        np.testing.assert_array_equal(m.ids, idx.query(q, 0).ids)
    assert idx.nearest(probes[1]) == LinearScanIndex(db).nearest(probes[1])


def test_exact_index_rejects_fuzzy_threshold():
    db = np.zeros((3, 32), np.uint8)
    with pytest.raises(ConfigError):
        ExactIndex(db).query(db[0], 1)


@pytest.mark.parametrize("name", ["exact", "linear", "mih"])
def test_wrong_length_and_dtype_raise_input_error(name):
    db = np.random.default_rng(0).integers(0, 256, size=(50, 32), dtype=np.uint8)
    idx = get_index(name, db)
    assert len(idx) == 50 and idx.nbytes >= db.nbytes
    for bad in (np.zeros(31, np.uint8), np.zeros(33, np.uint8), np.zeros((2, 32), np.uint8),
                np.zeros(32, np.int64)):
        with pytest.raises(InputError):
            idx.query(bad, 0)
        with pytest.raises(InputError):
            idx.nearest(bad)
    with pytest.raises(InputError):
        idx.query_many(np.zeros((2, 16), np.uint8), 0)
    with pytest.raises(InputError):
        get_index(name, np.zeros(32, np.uint8))
    with pytest.raises(ConfigError):
        idx.query(db[0], -1)
    with pytest.raises(ConfigError):
        idx.query(db[0], 257)


def test_unknown_index_name():
    with pytest.raises(UnknownNameError, match="index"):
        get_index("kd-tree", np.zeros((2, 32), np.uint8))


def test_index_does_not_alias_caller_array():
    rng = np.random.default_rng(1)
    db = rng.integers(0, 256, size=(100, 8), dtype=np.uint8)
    q = db[5].copy()
    idxs = [get_index(n, db) for n in ("exact", "linear", "mih")]
    db[:] = 0
    for idx in idxs:
        assert 5 in idx.query(q, 0).ids


def clustered_db(rng: np.random.Generator, n: int, centres: int = 40, nbytes: int = 32) -> np.ndarray:
    """Clusters of near-duplicates (0-40 bits from a centre), the hard case for both the MIH
    buckets (crowded) and the scan's partial-distance cut (many rows close on every word)."""
    c = rng.integers(0, 256, size=(centres, nbytes), dtype=np.uint8)
    db = c[rng.integers(0, centres, n)]
    flips = rng.integers(0, 41, n)
    bits = np.unpackbits(db, axis=1)
    for i in range(n):
        bits[i, rng.choice(bits.shape[1], flips[i], replace=False)] ^= 1
    return np.packbits(bits, axis=1)


@pytest.mark.parametrize("nbytes", [8, 16, 24, 32, 40])
def test_scan_cuts_are_exact_at_every_threshold(nbytes):
    """The scan's first cut (OR of two words, or a k-word partial sum) must never drop a
    match, whatever the hash length; clustered rows sit close on every word."""
    rng = np.random.default_rng(nbytes)
    db = clustered_db(rng, 700, nbytes=nbytes)
    lin = LinearScanIndex(db)
    q = flip(rng, db[5], 12)
    for t in sorted({0, 1, 15, 31, 32, 39, 40, 41, 63, 64, 95, 127, 128, 200, 8 * nbytes}):
        if t <= 8 * nbytes:
            assert_same(lin.query(q, t), *brute(db, q, t))


@pytest.mark.parametrize("threshold", [0, 1, 31, 32, 63, 256])
def test_mih_exact_on_clustered_data_and_edges(threshold):
    rng = np.random.default_rng(threshold)
    db = clustered_db(rng, 3000)
    db[7] = ~db[3]  # a pair at distance 256: only tau = 256 joins them
    lin = LinearScanIndex(db)
    for mih in (MultiIndexHashIndex(db, threshold=min(threshold, 31)),
                MultiIndexHashIndex(db, threshold=threshold, chunks=16, linear_fallback=False)
                if threshold <= 63 else MultiIndexHashIndex(db)):
        for q in (db[3], flip(rng, db[100], 20), flip(rng, db[200], 31), ~db[3]):
            expect = brute(db, q, threshold)
            assert_same(mih.query(q, threshold), *expect)
            assert_same(lin.query(q, threshold), *expect)
    if threshold == 256:
        assert len(lin.query(db[3], 256)) == 3000


@settings(max_examples=40, deadline=None)
@given(
    nbytes=st.sampled_from([8, 32]),
    threshold=st.integers(0, 64),
    chunks=st.integers(2, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_mih_finds_refined_pigeonhole_worst_case(nbytes, threshold, chunks, seed):
    """Worst case for the refined bound: every chunk differs in one bit more than its radius
    except one chunk probed at the full radius, which differs in exactly that radius; the
    total is T (or less when chunks are narrower than the radius)."""
    rng = np.random.default_rng(seed)
    bits = 8 * nbytes
    chunks = max(-(-bits // 32), min(chunks, bits))
    db = rng.integers(0, 256, size=(300, nbytes), dtype=np.uint8)
    probe = MultiIndexHashIndex(db, chunks=chunks, linear_fallback=False)
    assume(probe.probe_count(threshold) <= 1 << 14)
    radii = probe.radii(threshold)
    top = max(radii)
    exact_one = radii.index(top)
    starts = np.cumsum([0] + probe.widths[:-1])
    pos: list[int] = []
    for j, (s, w, r) in enumerate(zip(starts, probe.widths, radii)):
        k = min(w, r if j == exact_one else r + 1)
        pos += list(s + rng.choice(w, size=k, replace=False))
    assume(len(pos) <= threshold)
    target = int(rng.integers(300))
    qbits = np.unpackbits(db[target])
    qbits[pos] ^= 1
    q = np.packbits(qbits)
    ids, dists = brute(db, q, threshold)
    assert target in ids
    assert_same(probe.query(q, threshold), ids, dists)


def test_refined_radii_follow_the_bound():
    """T = m r + a: a + 1 chunks at r, the others at r - 1, and the bound's arithmetic holds."""
    db = np.random.default_rng(0).integers(0, 256, size=(1000, 32), dtype=np.uint8)
    for m in (11, 13, 14, 16):
        mih = MultiIndexHashIndex(db, chunks=m)
        r, a = divmod(31, m)
        radii = mih.radii(31)
        assert radii.count(r) == a + 1 and radii.count(r - 1) == m - a - 1
        assert sum(x + 1 for x in radii) == 31 + 1  # one more flip anywhere escapes all probes


@pytest.mark.slow
def test_mih_scale_equal():
    """At 2 x 10^5 rows, uniform and clustered, MIH returns the scan's exact sets."""
    rng = np.random.default_rng(11)
    n, t = 200_000, 31
    uniform = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    for db in (uniform, clustered_db(rng, 50_000, centres=500)):
        lin, mih = LinearScanIndex(db), MultiIndexHashIndex(db, threshold=t)
        assert not mih.uses_scan(t)
        qs = [flip(rng, db[int(i)], int(k)) for i, k in zip(rng.integers(0, len(db), 10), range(22, 32))]
        qs += list(rng.integers(0, 256, size=(5, 32), dtype=np.uint8))
        for q in qs:
            a = lin.query(q, t)
            assert_same(mih.query(q, t), a.ids, a.distances)
        for q in qs[:3]:  # spot check against the independent brute force
            assert_same(a := lin.query(q, t), *brute(db, q, t))
            assert len(a) >= 1


def test_bench_index_checks_every_peer_and_says_when_faiss_is_absent(monkeypatch):
    from e2eebench.evaluation.bench import index as bench

    r = bench.bench_index(3000, 31, n_queries=6, repeats=1)
    assert r["results_equal"] and r["n_near"] == 3 and r["matches_mean"] > 0
    if bench._faiss() is not None:
        assert r["faiss_results_equal"] and r["faiss_multihash_params"].endswith("nflip 1")
        assert r["faiss_multihash_over_mih"] == r["faiss_multihash_ms"] / r["mih_ms"]
    monkeypatch.setattr(bench, "_faiss", lambda: None)
    r = bench.bench_index(3000, 31, n_queries=4, repeats=1)
    assert r["faiss"].startswith("absent") and "faiss_multihash_ms" not in r
    with pytest.raises(ConfigError):
        bench.bench_index(100, 31, data="gaussian")


def test_bench_index_pdq_data_is_clustered_real_hashes():
    from e2eebench.evaluation.bench.index import pdq_data

    hashes, queries, is_near, info = pdq_data(500, 31, 6, 0.5, seed=0)
    assert hashes.shape == (500, 32) and info["real_hashes"] == 500
    lin = LinearScanIndex(hashes)
    near = [len(lin.query(q, 31)) for q in queries[is_near]]
    assert sum(n > 0 for n in near) >= 2  # edits of listed images are found
    assert max(len(lin.query(h, 31)) for h in hashes[:50]) > 1  # entries have neighbours


def test_mih_bucket_slots_cover_empty_single_pair_and_overflow_buckets():
    """Direct tables keep up to two ids inline and larger buckets in an overflow array; a
    list with buckets of every kind must answer exactly, single and batched."""
    rng = np.random.default_rng(11)
    db = np.concatenate([rng.integers(0, 256, size=(3000, 32), dtype=np.uint8),
                         np.repeat(rng.integers(0, 256, size=(1, 32), dtype=np.uint8), 2, axis=0),
                         clustered_db(rng, 600, centres=3)])
    mih = MultiIndexHashIndex(db, threshold=31, chunks=16, linear_fallback=False)
    assert mih._direct
    pairs = mih._slots
    sizes = {"empty": (pairs[:, 0] == -1), "one": (pairs[:, 0] >= 0) & (pairs[:, 1] == -1),
             "two": pairs[:, 1] >= 0, "overflow": pairs[:, 0] < -1}
    assert all(v.any() for v in sizes.values()), {k: int(v.sum()) for k, v in sizes.items()}
    assert mih._overflow.size == int((-1 - pairs[sizes["overflow"], 1]).sum())
    qs = np.stack([flip(rng, db[int(i)], int(k)) for i, k in zip(rng.integers(0, len(db), 20), range(0, 40, 2))])
    for q, m in zip(qs, mih.query_many(qs, 31)):
        assert_same(m, *brute(db, q, 31))
        assert_same(mih.query(q, 31), *brute(db, q, 31))


def test_scan_over_several_blocks_collects_survivors_of_every_block(monkeypatch):
    """Survivors of the first cut are verified together after the last block; matches in the
    first, a middle and the short last block must all come back with their distances."""
    import e2eebench.server.index as index_mod

    monkeypatch.setattr(index_mod, "BLOCK_ROWS", 256)
    rng = np.random.default_rng(5)
    db = rng.integers(0, 256, size=(256 * 5 + 17, 32), dtype=np.uint8)
    q = db[3].copy()
    for i, k in ((3, 0), (700, 20), (256 * 5 + 10, 31), (900, 32)):
        db[i] = flip(rng, q, k)
    lin = LinearScanIndex(db)
    for t in (31, 63, 256):
        m = lin.query(q, t)
        assert_same(m, *brute(db, q, t))
    assert set(lin.query(q, 31).ids.tolist()) >= {3, 700, 256 * 5 + 10}
    assert 900 not in lin.query(q, 31).ids.tolist()
