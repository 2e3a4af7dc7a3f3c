"""Cost of matching: our linear scan and multi-index hashing beside FAISS's, on the same hashes
and queries, in the same run.

Two data sets. ``uniform``: seeded random 256-bit hashes, where nothing is near anything.
``pdq``: real PDQ hashes of dead-leaves images and of four transformed variants of each
(JPEG q=30, gamma 1.5, blur 1.5 px, half size), then filled up to the list size with
synthetic entries, each a real hash with k random bit positions flipped (k uniform in
0..2T, drawn with replacement, so at most k bits differ): clusters of near-duplicates, the
crowded buckets a real list has. Hashing 10^6 real images would take hours, so only the
cluster centres are real; the rows say so (``data``, ``real_hashes``).

Queries: half near (uniform: a list hash with k bits flipped, k uniform in 0..T, so matches at
the very threshold are asked for; pdq: real hashes of other edits of listed images), half not
(random hashes; pdq: real hashes of unrelated images). Every query goes through every index
and all result sets must be identical -- a speed-up that changes the answer is worthless.

Peers, used when ``faiss-cpu`` is installed (the ``peers`` extra): FAISS IndexBinaryFlat (its
popcount scan) and IndexBinaryMultiHash with 16 tables of bits/16 bits and
nflip = floor(T / 16), the exact setting (nflip = 0 misses matches whose 16 chunks all
differ; its time and recall are reported apart, ``faiss_multihash_nflip0_*``). FAISS runs
on one thread, as our numpy code does. Each query is timed on each index in turn, in
``repeats`` rounds, so load from other processes falls on all of them alike; times are
medians of per-query CPU time of the calling thread (``*_ms``) and of wall time
(``*_wall_ms``), and ratios are taken between medians of the same run.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from e2eebench.protocols.errors import ConfigError
from e2eebench.server.index import LinearScanIndex, Match, MultiIndexHashIndex

DATA_LABELS = {
    "uniform": "synthetic uniform hashes",
    "pdq": "real PDQ hashes of dead-leaves images and 4 edits each, filled with bit-flipped copies",
}
#: Edits whose PDQ hashes are listed as cluster centres, and edits used as near queries.
LIST_EDITS = ("jpeg:30", "gamma:1.5", "blur:1.5", "resize:0.5")
QUERY_EDITS = ("jpeg:60", "brightness:1.2", "noise:0.02", "contrast:0.8")
FAISS_TABLES = 16


def _flip_rows(rng: np.random.Generator, rows: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """``rows`` with ``flips[i]`` random bit positions of row i flipped (drawn with
    replacement, so at most that many bits differ); vectorised over rows, one pass per flip."""
    out = rows.copy()
    nbits = 8 * rows.shape[1]
    top = int(flips.max()) if flips.size else 0
    for c in range(top):
        sel = np.flatnonzero(flips > c)
        pos = rng.integers(0, nbits, sel.size)
        out[sel, pos >> 3] ^= (np.uint8(128) >> (pos & 7).astype(np.uint8))
    return out


def uniform_data(size: int, threshold: int, n_queries: int, near_fraction: float, seed: int,
                 bits: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Seeded uniform list and queries; near queries are list hashes with 0..T bits flipped."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, size=(size, bits // 8), dtype=np.uint8)
    n_near = int(round(n_queries * near_fraction))
    flips = rng.integers(0, threshold + 1, n_near)
    flips[: min(n_near, 3)] = threshold  # always ask for matches at the very threshold
    near = np.stack([_exact_flips(rng, hashes[i], int(k))
                     for i, k in zip(rng.integers(0, size, n_near), flips)]) if n_near else \
        np.zeros((0, bits // 8), np.uint8)
    rand = rng.integers(0, 256, size=(n_queries - n_near, bits // 8), dtype=np.uint8)
    return hashes, np.concatenate([rand, near]), np.r_[np.zeros(len(rand), bool), np.ones(n_near, bool)], {
        "real_hashes": 0, "near_flipped_bits": f"uniform 0..{threshold}"}


def _exact_flips(rng: np.random.Generator, h: np.ndarray, k: int) -> np.ndarray:
    """``h`` with exactly ``k`` distinct bits flipped."""
    bits = np.unpackbits(h)
    bits[rng.choice(bits.shape[0], size=k, replace=False)] ^= 1
    return np.packbits(bits)


def pdq_data(size: int, threshold: int, n_queries: int, near_fraction: float, seed: int,
             images: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Clustered PDQ list (see the module docstring) and real PDQ queries."""
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.evaluation.data.transforms import parse_transform

    pdq = get_hasher("pdq")
    n_near = int(round(n_queries * near_fraction))
    images = max(1, min(images, -(-size // (1 + len(LIST_EDITS)))))
    items = get_corpus("dead-leaves", seed=seed, size=128).items(images)
    edits = [parse_transform(s) for s in LIST_EDITS]
    real = np.stack([pdq.hash(im) for it in items
                     for im in [it.image] + [e.apply(it.image, seed=seed + k) for k, e in enumerate(edits)]])
    rng = np.random.default_rng(seed)
    if size <= real.shape[0]:
        hashes = real[rng.permutation(real.shape[0])[:size]]
    else:
        centres = real[rng.integers(0, real.shape[0], size - real.shape[0])]
        fill = _flip_rows(rng, centres, rng.integers(0, 2 * threshold + 1, centres.shape[0]))
        hashes = np.concatenate([real, fill])[rng.permutation(size)]
    qedits = [parse_transform(s) for s in QUERY_EDITS]
    near = [pdq.hash(qedits[i % len(qedits)].apply(items[int(j)].image, seed=seed + 100 + i))
            for i, j in enumerate(rng.integers(0, len(items), n_near))]
    other = get_corpus("dead-leaves", seed=seed + 1, size=128).items(n_queries - n_near)
    far = [pdq.hash(it.image) for it in other]
    queries = np.stack(far + near).astype(np.uint8)
    return hashes, queries, np.r_[np.zeros(len(far), bool), np.ones(len(near), bool)], {
        "real_hashes": int(real.shape[0]), "near_flipped_bits": f"real edits {', '.join(QUERY_EDITS)}"}


def _faiss() -> Any | None:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        return None
    return faiss


def _faiss_match(lims: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> Match:
    order = np.argsort(ids[lims[0]:lims[1]], kind="stable")
    return Match(ids[lims[0]:lims[1]][order].astype(np.int64),
                 dist[lims[0]:lims[1]][order].astype(np.int32))


def _same(a: Match, b: Match) -> bool:
    return bool(np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances))


def bench_index(
    size: int,
    threshold: int,
    *,
    n_queries: int = 50,
    bits: int = 256,
    seed: int = 0,
    near_fraction: float = 0.5,
    data: str = "uniform",
    peers: bool = True,
    repeats: int = 3,
) -> dict[str, Any]:
    """Build every index on the same list, time the same queries on each (interleaved) and
    check the answers agree. Times are medians per query in milliseconds."""
    if size < 1 or n_queries < 1 or repeats < 1:
        raise ConfigError(f"size, n_queries and repeats must be >= 1, got {size}, {n_queries}, {repeats}")
    if bits < 8 or bits % 8:
        raise ConfigError(f"bits must be a positive multiple of 8, got {bits}")
    if not 0 <= threshold <= bits:
        raise ConfigError(f"threshold must lie in 0..{bits}, got {threshold}")
    if not 0.0 <= near_fraction <= 1.0:
        raise ConfigError(f"near_fraction must lie in 0..1, got {near_fraction}")
    if data not in DATA_LABELS:
        raise ConfigError(f"unknown data {data!r} (choose from {', '.join(DATA_LABELS)})")
    if data == "pdq" and bits != 256:
        raise ConfigError("pdq data has 256-bit hashes")
    if data == "uniform":
        hashes, queries, is_near, info = uniform_data(size, threshold, n_queries, near_fraction, seed, bits)
    else:
        hashes, queries, is_near, info = pdq_data(size, threshold, n_queries, near_fraction, seed)

    builds: dict[str, float] = {}

    def build(name: str, make: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = make()
        builds[name] = time.perf_counter() - t0
        return out

    linear = build("linear", lambda: LinearScanIndex(hashes))
    mih = build("mih", lambda: MultiIndexHashIndex(hashes, threshold=threshold))
    runners: dict[str, Callable[[np.ndarray], Match]] = {
        "mih": lambda q: mih.query(q, threshold),
        "linear": lambda q: linear.query(q, threshold),
    }
    faiss = _faiss() if peers else None
    threads = None
    if faiss is not None:
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        nflip = threshold // FAISS_TABLES

        def make_mh() -> Any:
            ix = faiss.IndexBinaryMultiHash(bits, FAISS_TABLES, bits // FAISS_TABLES)
            ix.add(hashes)
            return ix

        def make_flat() -> Any:
            ix = faiss.IndexBinaryFlat(bits)
            ix.add(hashes)
            return ix

        fmh = build("faiss_multihash", make_mh)
        fflat = build("faiss_flat", make_flat)

        def faiss_run(ix: Any, flips: int | None = None) -> Callable[[np.ndarray], Match]:
            def run(q: np.ndarray) -> Match:
                if flips is not None:
                    ix.nflip = flips
                lims, dist, ids = ix.range_search(q.reshape(1, -1), threshold + 1)  # radius is strict
                return _faiss_match(lims, dist, ids)
            return run

        runners["faiss_multihash"] = faiss_run(fmh, nflip)
        runners["faiss_flat"] = faiss_run(fflat)
        runners["faiss_multihash_nflip0"] = faiss_run(fmh, 0)
    batch_runners: dict[str, Callable[[np.ndarray], list[Match]]] = {
        "mih": lambda qs: mih.query_many(qs, threshold)}
    if faiss is not None:
        def faiss_batch(qs: np.ndarray) -> list[Match]:
            fmh.nflip = threshold // FAISS_TABLES
            lims, dist, ids = fmh.range_search(qs, threshold + 1)
            return [_faiss_match(lims[i:i + 2], dist, ids) for i in range(len(qs))]
        batch_runners["faiss_multihash"] = faiss_batch
    batch_cpu: dict[str, list[float]] = {k: [] for k in batch_runners}
    batch_results: dict[str, list[Match]] = {}
    try:
        cpu = {k: np.empty((repeats, len(queries))) for k in runners}
        wall = {k: np.empty((repeats, len(queries))) for k in runners}
        results: dict[str, list[Match]] = {k: [] for k in runners}
        for rep in range(repeats):
            for i, q in enumerate(queries):
                for name, run in runners.items():
                    w0, c0 = time.perf_counter(), time.thread_time()
                    m = run(q)
                    cpu[name][rep, i] = time.thread_time() - c0
                    wall[name][rep, i] = time.perf_counter() - w0
                    if rep == 0:
                        results[name].append(m)
            for name, run_all in batch_runners.items():  # the whole query set in one call
                c0 = time.thread_time()
                ms = run_all(queries)
                batch_cpu[name].append(time.thread_time() - c0)
                if rep == 0:
                    batch_results[name] = ms
    finally:
        if faiss is not None and threads is not None:
            faiss.omp_set_num_threads(threads)

    ref = results["linear"]
    exact = [k for k in runners if k != "faiss_multihash_nflip0"]
    equal = {k: all(_same(a, b) for a, b in zip(ref, results[k])) for k in exact}
    equal.update({f"{k}_batch": all(_same(a, b) for a, b in zip(ref, v)) for k, v in batch_results.items()})

    def med(t: np.ndarray, sel: np.ndarray | None = None) -> float | None:
        t = t if sel is None else t[:, sel]
        return float(np.median(t) * 1e3) if t.size else None

    out: dict[str, Any] = {
        "data": DATA_LABELS[data], "dataset": data, "size": size, "threshold": threshold,
        "bits": bits, "n_queries": n_queries, "n_near": int(is_near.sum()), "repeats": repeats,
        "seed": seed, **info, "timing": "median per query; *_ms CPU time of the calling thread, "
        "*_wall_ms wall time; indexes interleaved per query; *_batch_lookups_per_s: "
        "the whole query set in one call (query_many / one range_search), CPU time",
    }
    for k in runners:
        out[f"{k}_ms"] = med(cpu[k])
        out[f"{k}_wall_ms"] = med(wall[k])
    for k in ("linear", "mih"):
        out[f"{k}_ms_random"] = med(cpu[k], ~is_near)
        out[f"{k}_ms_near"] = med(cpu[k], is_near)
    for k, s in builds.items():
        out[f"{k}_build_s"] = s
    for k, v in batch_cpu.items():
        out[f"{k}_batch_lookups_per_s"] = len(queries) / float(np.median(v))
    out["speedup"] = out["linear_ms"] / out["mih_ms"]
    out["mih_lookups_per_s"] = 1e3 / out["mih_ms"]
    out["linear_ns_per_hash"] = out["linear_ms"] * 1e6 / size
    out["results_equal"] = bool(equal["mih"] and equal["mih_batch"])
    out["matches_mean"] = float(np.mean([len(m) for m in ref]))
    scan = mih.uses_scan(threshold)
    out.update({
        "mih_chunks": mih.chunks, "mih_chunk_bits": sorted(set(mih.widths)),
        "mih_radii": sorted(set(mih.radii(threshold))), "mih_probes": mih.probe_count(threshold),
        "mih_uses_scan": bool(scan),
        "mih_candidates_mean": float(np.mean([0 if scan else mih.candidates(q, threshold).size
                                              for q in queries])),
        "linear_nbytes": linear.nbytes, "mih_nbytes": mih.nbytes,
    })
    if faiss is None:
        out["faiss"] = "absent (pip install 'e2eebench[peers]')" if peers else "not requested"
        return out
    out.update({
        "faiss": f"faiss-cpu {faiss.__version__}, 1 thread",
        "faiss_multihash_params": f"{FAISS_TABLES} tables x {bits // FAISS_TABLES} bits, nflip {threshold // FAISS_TABLES}",
        "faiss_multihash_over_mih": out["faiss_multihash_ms"] / out["mih_ms"],
        "faiss_multihash_over_mih_wall": out["faiss_multihash_wall_ms"] / out["mih_wall_ms"],
        "faiss_flat_over_linear": out["faiss_flat_ms"] / out["linear_ms"],
        "faiss_flat_over_linear_wall": out["faiss_flat_wall_ms"] / out["linear_wall_ms"],
        "faiss_results_equal": bool(equal["faiss_multihash"] and equal["faiss_flat"]
                                    and equal["faiss_multihash_batch"]),
        "faiss_multihash_batch_over_mih_batch": out["mih_batch_lookups_per_s"]
        / out["faiss_multihash_batch_lookups_per_s"],
    })
    found = sum(len(b) for b in results["faiss_multihash_nflip0"])
    total = sum(len(a) for a in ref)
    out["faiss_multihash_nflip0_recall"] = found / total if total else None
    return out
