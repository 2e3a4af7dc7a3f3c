"""pytest-benchmark timings of the hot paths (run once as tests by default).

`pytest tests/test_benchmarks.py --benchmark-enable` times them; the assertions check the
result of each timed call, so a benchmark that computes nothing fails. Speed targets are
measured by `e2eebench bench ...` and reported in docs/performance.md, never asserted here.
"""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher, hamming
from e2eebench.evaluation.data.corpora import get_corpus
from e2eebench.protocols.crypto_group import Scalar, hash_to_group
from e2eebench.server.index import get_index

N = 100_000


@pytest.fixture(scope="module")
def hashes():
    return np.random.default_rng(0).integers(0, 256, (N, 32), dtype=np.uint8)


def _near(h, flips, seed=1):
    rng = np.random.default_rng(seed)
    bits = np.unpackbits(h)
    bits[rng.choice(256, flips, replace=False)] ^= 1
    return np.packbits(bits)


def test_bench_linear_scan(benchmark, hashes):
    index = get_index("linear", hashes)
    q = _near(hashes[123], 15)
    m = benchmark(index.query, q, 31)
    assert 123 in m.ids and (m.distances <= 31).all()


def test_bench_mih_query(benchmark, hashes):
    index = get_index("mih", hashes, threshold=31)
    q = _near(hashes[456], 15)
    m = benchmark(index.query, q, 31)
    assert list(m.ids) == list(np.flatnonzero(hamming(hashes, q) <= 31))


def test_bench_mih_query_many(benchmark, hashes):
    index = get_index("mih", hashes, threshold=31)
    qs = np.stack([_near(hashes[i], 31, seed=i) for i in range(64)])
    ms = benchmark(index.query_many, qs, 31)
    assert all(i in m.ids for i, m in enumerate(ms))


def test_bench_faiss_multihash_peer(benchmark, hashes):
    """The peer `e2eebench bench index` sets beside our MIH (exact: nflip = 31 // 16)."""
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexBinaryMultiHash(256, 16, 16)
    index.add(hashes)
    index.nflip = 1
    q = _near(hashes[456], 31)
    lims, dist, ids = benchmark(index.range_search, q[None], 32)
    assert sorted(ids.tolist()) == list(np.flatnonzero(hamming(hashes, q) <= 31))


def test_bench_pdq_hash(benchmark):
    image = get_corpus("dead-leaves", size=256).items(1)[0].image
    h = benchmark(get_hasher("pdq").hash, image)
    import pdqhash  # the reference library called directly: the hasher adds nothing but packing
    bits, _ = pdqhash.compute(np.asarray(image.convert("RGB")))
    assert h.shape == (32,) and np.array_equal(np.unpackbits(h), bits.astype(np.uint8))
    assert 64 < int(np.unpackbits(h).sum()) < 192   # PDQ thresholds at the median: about half the bits set


def test_bench_scalar_mult(benchmark):
    p = hash_to_group(b"bench", b"e2eebench bench")
    s = Scalar.random(np.random.default_rng(0))
    out = benchmark(lambda: p * s)
    assert out != p


def test_bench_hash_to_group(benchmark):
    out = benchmark(hash_to_group, b"x" * 32, b"e2eebench bench")
    from rbcl import crypto_core_ristretto255_is_valid_point
    enc = out.data
    assert len(enc) == 32 and crypto_core_ristretto255_is_valid_point(enc)   # a canonical ristretto255 element
    assert out != hash_to_group(b"x" * 31 + b"y", b"e2eebench bench")    # the input matters
    assert out != hash_to_group(b"x" * 32, b"e2eebench other")           # the domain separates
