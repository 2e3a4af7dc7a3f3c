"""Cost of matching: linear scan versus multi-index hashing on the same hashes and queries.

The database is synthetic uniform hashes (seeded), which is the hard case for multi-index
hashing only in that nothing is near anything; real workloads query near-duplicates, so half
the queries (by default) are a database hash with floor(T/2) bits flipped. Every query is run
through both indexes and the result sets must be identical -- a speed-up that changes the
answer would be worthless.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from e2eebench.protocols.errors import ConfigError
from e2eebench.server.index import HashIndex, LinearScanIndex, MultiIndexHashIndex

DATA_LABEL = "synthetic uniform hashes"


def _near(rng: np.random.Generator, h: np.ndarray, flips: int) -> np.ndarray:
    """``h`` with exactly ``flips`` distinct bits flipped."""
    bits = np.unpackbits(h)
    bits[rng.choice(bits.shape[0], size=flips, replace=False)] ^= 1
    return np.packbits(bits)


def _timed_queries(index: HashIndex, queries: np.ndarray, threshold: int) -> tuple[list, np.ndarray]:
    """Run each query alone; wall time per query in seconds (perf_counter)."""
    out, times = [], np.empty(queries.shape[0])
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        out.append(index.query(q, threshold))
        times[i] = time.perf_counter() - t0
    return out, times


def bench_index(
    size: int,
    threshold: int,
    *,
    n_queries: int = 50,
    bits: int = 256,
    seed: int = 0,
    near_fraction: float = 0.5,
) -> dict[str, Any]:
    """Build both indexes on ``size`` seeded random hashes, time the same queries on each and
    check the answers agree. Times are means per query in milliseconds."""
    if size < 1 or n_queries < 1:
        raise ConfigError(f"size and n_queries must be >= 1, got {size} and {n_queries}")
    if bits < 8 or bits % 8:
        raise ConfigError(f"bits must be a positive multiple of 8, got {bits}")
    if not 0 <= threshold <= bits:
        raise ConfigError(f"threshold must lie in 0..{bits}, got {threshold}")
    if not 0.0 <= near_fraction <= 1.0:
        raise ConfigError(f"near_fraction must lie in 0..1, got {near_fraction}")
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, size=(size, bits // 8), dtype=np.uint8)
    n_near = int(round(n_queries * near_fraction))
    flips = threshold // 2
    near = np.array(
        [_near(rng, hashes[i], flips) for i in rng.integers(0, size, size=n_near)],
        dtype=np.uint8,
    ).reshape(n_near, bits // 8)
    rand = rng.integers(0, 256, size=(n_queries - n_near, bits // 8), dtype=np.uint8)
    queries = np.concatenate([rand, near])
    is_near = np.r_[np.zeros(rand.shape[0], bool), np.ones(n_near, bool)]

    t0 = time.perf_counter()
    linear = LinearScanIndex(hashes)
    linear_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    mih = MultiIndexHashIndex(hashes, threshold=threshold)
    mih_build = time.perf_counter() - t0

    lin_res, lin_t = _timed_queries(linear, queries, threshold)
    mih_res, mih_t = _timed_queries(mih, queries, threshold)
    equal = all(
        np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances)
        for a, b in zip(lin_res, mih_res)
    )
    scan = mih.uses_scan(threshold)
    cands = [0 if scan else int(mih.candidates(q, threshold).size) for q in queries]

    def ms(t: np.ndarray, sel: np.ndarray) -> float | None:
        return float(t[sel].mean() * 1e3) if sel.any() else None

    every = np.ones(n_queries, bool)
    linear_ms, mih_ms = ms(lin_t, every), ms(mih_t, every)
    return {
        "data": DATA_LABEL,
        "size": size,
        "threshold": threshold,
        "bits": bits,
        "n_queries": n_queries,
        "n_near": n_near,
        "near_flipped_bits": flips,
        "seed": seed,
        "linear_build_s": linear_build,
        "mih_build_s": mih_build,
        "linear_ms": linear_ms,
        "mih_ms": mih_ms,
        "speedup": linear_ms / mih_ms,
        "linear_ms_random": ms(lin_t, ~is_near),
        "mih_ms_random": ms(mih_t, ~is_near),
        "linear_ms_near": ms(lin_t, is_near),
        "mih_ms_near": ms(mih_t, is_near),
        "linear_ns_per_hash": linear_ms * 1e6 / size,
        "results_equal": bool(equal),
        "matches_mean": float(np.mean([len(m) for m in lin_res])),
        "mih_chunks": mih.chunks,
        "mih_chunk_bits": sorted(set(mih.widths)),
        "mih_uses_scan": bool(scan),
        "mih_candidates_mean": float(np.mean(cands)),
        "linear_nbytes": linear.nbytes,
        "mih_nbytes": mih.nbytes,
    }
