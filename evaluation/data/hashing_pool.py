"""Hashing at benchmark scale: images built and hashed in worker processes, distances in blocks.

Why processes: every hash library here holds the GIL, so threads would not help. Workers
receive only *references* to images (corpus spec, seed, size, index) and rebuild the pixels
themselves, so no image ever crosses a process boundary; results come back in input order
whatever the number of workers (deterministic output).

Why blocks: 10^8 unrelated pairs of 256-bit hashes would be 400 MB of int32 distances. The
histogram of distances is all the metrics need, so :func:`pair_histogram` XORs one block of
queries against all references at a time (hashes viewed as uint64 words, ``np.bitwise_count``
per word) and keeps only counts and each query's nearest unrelated reference.
"""
from __future__ import annotations

import zlib
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from e2eebench.protocols.errors import ConfigError
from e2eebench.evaluation.data.processes import pool_usable

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SourceRef:
    """Where one source image comes from; enough for any process to rebuild it."""

    corpus: str          # a get_corpus spec: "dead-leaves", "bundled", "folder:PATH"
    seed: int
    size: int
    index: int
    id: str = ""
    group: str = ""


@dataclass
class HashTable:
    """Hashes of N sources, untransformed and under each of T transforms, per hasher."""

    refs: list[SourceRef]
    transforms: list[str]
    hashers: list[str]
    original: dict[str, np.ndarray]             # hasher -> (N, nbytes) uint8
    transformed: dict[str, np.ndarray]          # hasher -> (T, N, nbytes) uint8
    quality_original: np.ndarray | None = None  # (N,) PDQ quality, if PDQ is hashed
    quality_transformed: np.ndarray | None = None  # (T, N)
    cpu_s: float = 0.0
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=8)
def _corpus(spec: str, seed: int, size: int):
    from e2eebench.evaluation.data.corpora import get_corpus
    return get_corpus(spec, seed=seed, size=size)


@lru_cache(maxsize=8)
def _finite_items(spec: str, seed: int, size: int):
    return _corpus(spec, seed, size).items()


def load_source(ref: SourceRef):
    """The image a reference points to (dead-leaves item i is built alone, from its own stream)."""
    c = _corpus(ref.corpus, ref.seed, ref.size)
    if hasattr(c, "image") and not getattr(c, "finite", True):
        return c.image(ref.index)
    return _finite_items(ref.corpus, ref.seed, ref.size)[ref.index].image


def transform_seed(seed: int, spec: str, ref: SourceRef) -> int:
    """Seed of one (transform, source) edit: independent of worker count and chunking."""
    return zlib.crc32(f"{seed}|{spec}|{ref.corpus}|{ref.seed}|{ref.index}".encode())


def _hash_chunk(args) -> tuple:
    """Worker: rebuild each source, hash it and its transformed copies with every hasher."""
    import time
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.data.transforms import parse_transform
    refs, specs, names, seed = args
    t0 = time.process_time()
    hashers = [get_hasher(n) for n in names]
    tfs = [parse_transform(s) for s in specs]
    n, T = len(refs), len(specs)
    orig = {h.name: np.zeros((n, h.nbytes), np.uint8) for h in hashers}
    tr = {h.name: np.zeros((T, n, h.nbytes), np.uint8) for h in hashers}
    q_o = np.full(n, -1, np.int16)
    q_t = np.full((T, n), -1, np.int16)

    def hash_all(img, put, put_q):
        for h in hashers:
            if h.name == "pdq":
                hv, q = h.hash_with_quality(img)
                put_q(q)
            else:
                hv = h.hash(img)
            put(h.name, hv)

    for i, ref in enumerate(refs):
        img = load_source(ref).convert("RGB")
        hash_all(img, lambda k, v: orig[k].__setitem__(i, v), lambda q: q_o.__setitem__(i, q))
        for j, (spec, tf) in enumerate(zip(specs, tfs)):
            out = tf.apply(img, seed=transform_seed(seed, spec, ref))
            hash_all(out, lambda k, v: tr[k].__setitem__((j, i), v), lambda q: q_t.__setitem__((j, i), q))
    return orig, tr, q_o, q_t, time.process_time() - t0


def hash_sources(refs: Sequence[SourceRef], transforms: Sequence[str], hashers: Sequence[str], *,
                 seed: int = 0, workers: int = 2, chunk: int = 24,
                 progress: Progress | None = None) -> HashTable:
    """Hash every source and its transformed copies; ``workers`` processes (1 = in-process)."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    refs = list(refs)
    chunks = [(refs[i:i + chunk], list(transforms), list(hashers), seed) for i in range(0, len(refs), chunk)]
    results = []
    done = 0
    # in-process where children cannot be started (see processes.pool_usable)
    if workers == 1 or len(chunks) <= 1 or not pool_usable("hashing"):
        it = map(_hash_chunk, chunks)
        for r, c in zip(it, chunks):
            results.append(r)
            done += len(c[0])
            if progress:
                progress("hash", done, len(refs))
    else:
        # forkserver: children never inherit the parent's native threads (TenSEAL, BLAS) mid-lock
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                for r, c in zip(ex.map(_hash_chunk, chunks), chunks):   # map keeps input order
                    results.append(r)
                    done += len(c[0])
                    if progress:
                        progress("hash", done, len(refs))
        except BrokenProcessPool:   # a child died (killed, out of memory): the same work in-process
            print("e2eebench: note: a hashing worker process died; hashing in this process",
                  file=sys.stderr)
            results = list(map(_hash_chunk, chunks))
    from e2eebench.clientside.hashing import get_hasher
    T = len(transforms)
    original, transformed = {}, {}
    for name in hashers:
        nb = get_hasher(name).nbytes
        original[name] = np.concatenate([r[0][name] for r in results]) if results else np.zeros((0, nb), np.uint8)
        transformed[name] = (np.concatenate([r[1][name] for r in results], axis=1) if results
                             else np.zeros((T, 0, nb), np.uint8))
    has_q = "pdq" in hashers
    q_o = np.concatenate([r[2] for r in results]) if (has_q and results) else None
    q_t = np.concatenate([r[3] for r in results], axis=1) if (has_q and results) else None
    return HashTable(refs, list(transforms), list(hashers), original, transformed, q_o, q_t,
                     cpu_s=float(sum(r[4] for r in results)))


# --------------------------------------------------------------------------- blocked distances


def _words(h: np.ndarray) -> np.ndarray:
    """Packed hashes as uint64 words (one popcount per 64 bits instead of per byte)."""
    h = np.ascontiguousarray(h, dtype=np.uint8)
    if h.shape[-1] % 8:
        pad = 8 - h.shape[-1] % 8
        h = np.concatenate([h, np.zeros(h.shape[:-1] + (pad,), np.uint8)], axis=-1)
    return h.view(np.uint64)


@dataclass
class PairCounts:
    """Counts of unrelated-pair distances (``hist[d]`` pairs at distance d) and per-query minima."""

    hist: np.ndarray        # (bits + 1,) int64
    nearest: np.ndarray     # (Q,) nearest unrelated reference per query; bits + 1 if none

    @property
    def pairs(self) -> int:
        return int(self.hist.sum())


def pair_histogram(queries: np.ndarray, refs: np.ndarray, bits: int, *,
                   query_groups: np.ndarray | None = None, ref_groups: np.ndarray | None = None,
                   block: int | None = None) -> PairCounts:
    """Histogram of Hamming distances over all (query, ref) pairs whose groups differ.

    Pairs with equal group ids (a photo and its own crops, or an image and its own source)
    are not unrelated and are left out. Memory is O(block x len(refs)), never O(pairs).
    """
    q, r = _words(queries), _words(refs)
    nq, nr = len(q), len(r)
    hist = np.zeros(bits + 2, np.int64)
    nearest = np.full(nq, bits + 1, np.int32)
    if nq == 0 or nr == 0:
        return PairCounts(hist[:bits + 1], nearest)
    if block is None:
        block = max(1, min(nq, 4_000_000 // max(1, nr)))
    dt = np.uint16 if bits >= 255 else np.uint8
    sentinel = bits + 1
    for i in range(0, nq, block):
        qb = q[i:i + block]
        d = np.zeros((len(qb), nr), dt)
        for w in range(q.shape[1]):
            d += np.bitwise_count(qb[:, None, w] ^ r[None, :, w]).astype(dt, copy=False)
        if query_groups is not None and ref_groups is not None:
            d[query_groups[i:i + block, None] == ref_groups[None, :]] = sentinel
        hist += np.bincount(d.ravel(), minlength=bits + 2)[:bits + 2]
        nearest[i:i + block] = d.min(axis=1)
    return PairCounts(hist[:bits + 1], nearest)


def group_codes(groups: Sequence[str]) -> np.ndarray:
    """Integer codes for group names (equal names, equal codes)."""
    _, codes = np.unique(np.asarray(list(groups), dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64)
