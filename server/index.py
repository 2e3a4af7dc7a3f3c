"""Matching indexes over packed perceptual hashes: exact, linear scan, multi-index hashing.

Hashes are packed bit arrays, ``np.ndarray[uint8]`` of shape ``(n, bits // 8)``; the distance
is the Hamming count. Every index answers the same question -- which database ids lie within
Hamming distance T of a query -- so they can be swapped and compared: the linear scan is the
exact baseline, multi-index hashing (Norouzi, Punjani & Fleet) must return the very same set in
sub-linear time, and the exact index answers T = 0 by binary search.

Indexes are built once and then only read: ``query`` and ``nearest`` keep no state, so one index
may serve many sessions. All work over database entries is vectorised with numpy; the only
Python loops run over blocks of 2**16 rows, over chunks or over queries.
"""
from __future__ import annotations

import abc
import math
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from e2eebench.protocols.errors import ConfigError, InputError, UnknownNameError

__all__ = [
    "Match",
    "HashIndex",
    "ExactIndex",
    "LinearScanIndex",
    "MultiIndexHashIndex",
    "INDEXES",
    "get_index",
]

#: Rows per scan block. Measured on numpy 2.4: 2**17 rows was the fastest of 2**12..2**20 at
#: 10^5 and 10^6 rows; smaller blocks pay numpy's ~1 us per call more often than they gain
#: from staying in L2, larger ones spill the scratch arrays out of the cache.
BLOCK_ROWS = 1 << 17
#: Per-thread scratch of the scan (see :func:`_scan_buffers`).
_SCRATCH = threading.local()

# Rough per-operation costs in seconds (numpy 2, one commodity x86 core, cold caches). They
# only steer the choice of chunk count and the fallback to the scan; no reported number comes
# from them.
_C_LIN_WORD = 0.65e-9  # scan: one 64-bit word of one database hash (word-major layout)
_C_LIN_FIXED = 20e-6  # scan: per-query overhead
_ROW_SCAN_FACTOR = 1.5  # scan over the row-major layout MIH keeps (strided word columns)
_C_PROBE = 60e-9  # MIH: one bucket probe in an offset table (two gathers + range expansion)
_C_SEARCH_STEP = 25e-9  # MIH: one binary-search step when the chunk is too wide for a table
_C_CAND = 24e-9  # MIH: one candidate (perm gather, a cache miss on its row)
_C_CAND_WORD = 4e-9  # MIH: one 64-bit word of a candidate (row gather, xor, popcount)
_C_MIH_FIXED = 30e-6  # MIH: per-query overhead (chunk values, a dozen numpy calls)
#: Most probes one MIH query may enumerate (their masks alone take 16 bytes each).
MAX_PROBES = 1 << 22


@dataclass(frozen=True)
class Match:
    """Database ids within the threshold (ascending) and their Hamming distances."""

    ids: np.ndarray  # int64, sorted ascending
    distances: np.ndarray  # int32, aligned with ids

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _empty_match() -> Match:
    return Match(np.empty(0, np.int64), np.empty(0, np.int32))


def _as_hash_matrix(hashes: Any) -> np.ndarray:
    """Validate a database: 2-D uint8, at least one byte per hash."""
    arr = np.asarray(hashes)
    if arr.dtype != np.uint8:
        raise InputError(f"hashes must be packed uint8 bits, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputError(f"hashes must have shape (n, bytes_per_hash), got {arr.shape}")
    return np.ascontiguousarray(arr)


def _to_words(hashes: np.ndarray) -> np.ndarray:
    """Rows as uint64 words; zero-pad to whole words (padding adds no distance)."""
    n, nb = hashes.shape
    pad = (-nb) % 8
    if pad:
        hashes = np.concatenate([hashes, np.zeros((n, pad), np.uint8)], axis=1)
    return np.ascontiguousarray(hashes).view(np.uint64)


def _words_columns(hashes: np.ndarray) -> np.ndarray:
    """Word-major layout (words, n): each word column is contiguous, so the scan runs
    one long vector op per word instead of a slow reduction over a length-4 axis."""
    return _to_words(hashes).T.copy()  # a copy: the index never aliases the caller's array


def _distances(cols: np.ndarray, qwords: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    """Hamming distances (uint16) from the query words to the selected database rows."""
    if isinstance(rows, np.ndarray):
        acc = np.bitwise_count(np.take(cols[0], rows) ^ qwords[0]).astype(np.uint16)
        for k in range(1, cols.shape[0]):
            acc += np.bitwise_count(np.take(cols[k], rows) ^ qwords[k])
        return acc
    acc = np.bitwise_count(cols[0, rows] ^ qwords[0]).astype(np.uint16)
    for k in range(1, cols.shape[0]):
        acc += np.bitwise_count(cols[k, rows] ^ qwords[k])
    return acc


#: Below this threshold the scan's first cut is the popcount of the OR of the first two words'
#: XORs (at most the distance over those 128 bits; 48 +- 3.5 for a uniform pair).
OR_CUT_MAX = 40


def _prefix_words(words: int, threshold: int) -> int:
    """Words summed before the scan's cut when the OR cut does not apply: k words of a uniform
    pair differ in 32k +- 4 sqrt(k) bits, so k = T // 32 + 2 leaves few rows standing."""
    return max(1, min(words, threshold // 32 + 2))


def _scan_buffers(block: int, wide: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scratch arrays of one scan block, kept per thread and reused: a fresh multi-megabyte
    array per query can cost page faults whenever the allocator has returned its memory to
    the system, and the scan of a 10^5 list takes only ~0.2 ms."""
    key = (block, wide)
    bufs = getattr(_SCRATCH, "scan", None)
    if bufs is None or bufs[0] != key:
        bufs = (key, np.empty((2, block), np.uint64), np.empty(block, np.uint8),
                np.empty(block, np.uint16 if wide else np.uint8))
        _SCRATCH.scan = bufs
    return bufs[1], bufs[2], bufs[3]


def _scan(cols: np.ndarray, qwords: np.ndarray, threshold: int) -> Match:
    """Blocked exact scan: every row within the threshold.

    Each block is first cut by a lower bound on the distance that reads only part of each
    row: popcount((w0 ^ q0) | (w1 ^ q1)) for small thresholds (one popcount for two words), the
    sum over the first k words otherwise. Partial bounds never exceed the full distance, so a
    row above the threshold on the bound is out. A block whose smallest bound exceeds the
    threshold is skipped without listing its rows; the rows left standing in all blocks get
    their full distance in one gather at the end, so many survivors (clustered lists) add one
    pass, not a dozen numpy calls per block. When nearly every row would survive, the bound is
    the full distance itself (kept in uint16).
    """
    words, n = cols.shape
    use_or = words >= 2 and threshold <= OR_CUT_MAX
    k = 2 if use_or else _prefix_words(words, threshold)
    exact = not use_or and k == words  # the bound is the distance itself
    wide = exact and k * 64 > 255
    block = min(n, BLOCK_ROWS)
    xy, cnt, acc = _scan_buffers(block, wide)
    q2 = qwords[:2].reshape(-1, 1)
    ids: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        m = stop - start
        a = acc[:m]
        if use_or:
            x = xy[:, :m]
            np.bitwise_xor(cols[:2, start:stop], q2, out=x)
            np.bitwise_or(x[0], x[1], out=x[0])
            np.bitwise_count(x[0], out=a)
        else:
            x = xy[0, :m]
            np.bitwise_xor(cols[0, start:stop], qwords[0], out=x)
            np.bitwise_count(x, out=a)
            c = cnt[:m]
            for w in range(1, k):
                np.bitwise_xor(cols[w, start:stop], qwords[w], out=x)
                np.bitwise_count(x, out=c)
                np.add(a, c, out=a)
        if int(a.min()) > threshold:
            continue
        hit = np.flatnonzero(a <= threshold)
        if exact:
            dists.append(a[hit].astype(np.int32))  # before the buffer is reused
        hit += start
        ids.append(hit)
    if not ids:
        return _empty_match()
    hit = np.concatenate(ids) if len(ids) > 1 else ids[0]
    if exact:
        return Match(hit.astype(np.int64), np.concatenate(dists))
    d = _distances(cols, qwords, hit)
    keep = np.flatnonzero(d <= threshold)
    if keep.size == 0:
        return _empty_match()
    return Match(hit[keep].astype(np.int64), d[keep].astype(np.int32))


def _scan_nearest(cols: np.ndarray, qwords: np.ndarray) -> tuple[int, int]:
    """Blocked scan for the closest row; ties go to the lowest id."""
    n = cols.shape[1]
    best_id, best_d = -1, 1 << 30
    for start in range(0, n, BLOCK_ROWS):
        d = _distances(cols, qwords, slice(start, min(n, start + BLOCK_ROWS)))
        i = int(np.argmin(d))
        if int(d[i]) < best_d:
            best_id, best_d = start + i, int(d[i])
    return best_id, best_d


class HashIndex(abc.ABC):
    """A read-only index over n packed hashes of equal length."""

    name: ClassVar[str]

    def __init__(self, hashes: np.ndarray) -> None:
        arr = _as_hash_matrix(hashes)
        self._n, self._nbytes_hash = arr.shape
        self.bits = 8 * self._nbytes_hash

    @classmethod
    def build(cls, hashes: np.ndarray, **params: Any) -> HashIndex:
        """Build the index over ``hashes`` (n, bits // 8)."""
        return cls(hashes, **params)

    def __len__(self) -> int:
        return self._n

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """Bytes held by the index structures (the stored hashes included)."""

    # -- input checks shared by every index ------------------------------------------------
    def _check_hash(self, h: Any) -> np.ndarray:
        return self._checked(h, 1, "query hash")

    def _check_many(self, hs: Any) -> np.ndarray:
        return self._checked(hs, 2, "query hashes")

    def _checked(self, h: Any, ndim: int, what: str) -> np.ndarray:
        arr = np.asarray(h)
        if arr.dtype != np.uint8:
            raise InputError(f"{what}: must be packed uint8 bits, got dtype {arr.dtype}")
        if arr.ndim != ndim or arr.shape[-1] != self._nbytes_hash:
            raise InputError(f"{what}: shape {arr.shape}, but the index holds {self._nbytes_hash}-byte hashes")
        return arr

    def _check_threshold(self, threshold: Any) -> int:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
            raise ConfigError(f"threshold must be an integer, got {threshold!r}")
        t = int(threshold)
        if not 0 <= t <= self.bits:
            raise ConfigError(f"threshold must lie in 0..{self.bits}, got {t}")
        return t

    # -- queries ---------------------------------------------------------------------------
    @abc.abstractmethod
    def query(self, h: np.ndarray, threshold: int) -> Match:
        """All ids within Hamming distance ``threshold`` of ``h``."""

    def query_many(self, hs: np.ndarray, threshold: int) -> list[Match]:
        """One :class:`Match` per row of ``hs`` (q, bits // 8)."""
        arr = self._check_many(hs)
        t = self._check_threshold(threshold)
        return [self.query(row, t) for row in arr]

    @abc.abstractmethod
    def nearest(self, h: np.ndarray) -> tuple[int, int]:
        """(id, distance) of the closest database hash, lowest id on ties."""


class LinearScanIndex(HashIndex):
    """The exact baseline: Hamming distance to every database hash, block by block."""

    name = "linear"

    def __init__(self, hashes: np.ndarray) -> None:
        super().__init__(hashes)
        self._cols = _words_columns(_as_hash_matrix(hashes))

    @property
    def nbytes(self) -> int:
        return int(self._cols.nbytes)

    def _qwords(self, h: np.ndarray) -> np.ndarray:
        return _to_words(h.reshape(1, -1))[0]

    def query(self, h: np.ndarray, threshold: int) -> Match:
        q = self._check_hash(h)
        return _scan(self._cols, self._qwords(q), self._check_threshold(threshold))

    def nearest(self, h: np.ndarray) -> tuple[int, int]:
        q = self._check_hash(h)
        if self._n == 0:
            raise InputError("nearest() on an empty index")
        return _scan_nearest(self._cols, self._qwords(q))


class ExactIndex(HashIndex):
    """Exact matching only: hashes as fixed-width byte keys in one sorted array, found by
    binary search in O(log n). Stable sort keeps duplicate hashes in ascending id order."""

    name = "exact"

    def __init__(self, hashes: np.ndarray) -> None:
        super().__init__(hashes)
        arr = _as_hash_matrix(hashes)
        self._dtype = np.dtype(f"V{self._nbytes_hash}")
        keys = arr.view(self._dtype).ravel()
        self._order = np.argsort(keys, kind="stable").astype(np.int64)
        self._keys = keys[self._order]

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._order.nbytes)

    def _key(self, q: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(q).reshape(1, -1).view(self._dtype).ravel()

    def query(self, h: np.ndarray, threshold: int = 0) -> Match:
        q = self._check_hash(h)
        if self._check_threshold(threshold) != 0:
            raise ConfigError(f"exact index answers threshold 0 only, got {threshold}")
        key = self._key(q)
        lo = int(np.searchsorted(self._keys, key, "left")[0])
        hi = int(np.searchsorted(self._keys, key, "right")[0])
        ids = self._order[lo:hi].copy()  # ascending: stable sort of equal keys
        return Match(ids, np.zeros(ids.shape[0], np.int32))

    def query_many(self, hs: np.ndarray, threshold: int = 0) -> list[Match]:
        arr = self._check_many(hs)
        if self._check_threshold(threshold) != 0:
            raise ConfigError(f"exact index answers threshold 0 only, got {threshold}")
        keys = np.ascontiguousarray(arr).view(self._dtype).ravel()
        lo = np.searchsorted(self._keys, keys, "left")
        hi = np.searchsorted(self._keys, keys, "right")
        out = []
        for a, b in zip(lo.tolist(), hi.tolist()):
            ids = self._order[a:b].copy()
            out.append(Match(ids, np.zeros(ids.shape[0], np.int32)))
        return out

    def nearest(self, h: np.ndarray) -> tuple[int, int]:
        """An exact hit in O(log n); otherwise a blocked scan of the stored keys (O(n)),
        because sorted byte order says nothing about Hamming distance."""
        q = self._check_hash(h)
        if self._n == 0:
            raise InputError("nearest() on an empty index")
        m = self.query(q, 0)
        if len(m):
            return int(m.ids[0]), 0
        qw = _to_words(q.reshape(1, -1))[0]
        best_id, best_d = -1, 1 << 30
        raw = self._keys.view(np.uint8).reshape(self._n, self._nbytes_hash)
        for start in range(0, self._n, BLOCK_ROWS):
            cols = _words_columns(raw[start : start + BLOCK_ROWS])
            d = _distances(cols, qw, slice(None))
            ids = self._order[start : start + d.shape[0]]
            dmin = int(d.min())
            if dmin < best_d or (dmin == best_d and int(ids[d == dmin].min()) < best_id):
                best_id, best_d = int(ids[d == dmin].min()), dmin
        return best_id, best_d


# -- multi-index hashing ----------------------------------------------------------------------
def _masks(width: int, radius: int) -> np.ndarray:
    """All ``width``-bit masks of weight <= radius (uint64), built level by level without a
    Python loop over masks: extend each mask by a bit above its highest set bit. Empty for a
    negative radius (a chunk the refined pigeonhole bound does not probe)."""
    if radius < 0:
        return np.zeros(0, np.uint64)
    level = np.zeros(1, np.uint64)
    high = np.full(1, -1, np.int64)
    out = [level]
    bits = np.arange(width, dtype=np.int64)
    for _ in range(min(radius, width)):
        ok = bits[None, :] > high[:, None]
        parent, bit = np.nonzero(ok)
        level = level[parent] | (np.uint64(1) << bit.astype(np.uint64))
        high = bit
        out.append(level)
    return np.concatenate(out)


def _ball(width: int, radius: int) -> int:
    """Number of ``width``-bit values within Hamming distance ``radius`` of one value (0 for a
    negative radius)."""
    return sum(math.comb(width, k) for k in range(min(radius, width) + 1))


def _widths(bits: int, m: int) -> list[int]:
    """m disjoint chunks whose widths differ by at most one bit."""
    base, extra = divmod(bits, m)
    return [base + 1 if j < extra else base for j in range(m)]


def _direct_ok(width: int, n: int) -> bool:
    """A bucket-offset table of 2**w entries beats binary search unless it outweighs the data."""
    return (1 << width) <= max(2 * n, 1 << 17)


def _chunk_cost(n: int, width: int, radius: int, direct: bool, words: int = 4) -> float:
    """Modelled seconds one chunk adds to a query: its probes and their expected candidates
    (uniform hashes: each probe hits n / 2**w rows)."""
    probes = _ball(width, radius)
    per_probe = _C_PROBE if direct else _C_PROBE + _C_SEARCH_STEP * math.log2(max(2, n))
    return probes * (per_probe + (n / float(1 << width)) * (_C_CAND + words * _C_CAND_WORD))


def pigeonhole_radii(widths: list[int], threshold: int, n: int) -> list[int]:
    """Per-chunk probe radius from the refined pigeonhole bound (Norouzi, Punjani & Fleet 2014).

    Write T = m r + a with 0 <= a < m. If d(q, x) <= T, then among any a + 1 chosen chunks one
    differs in at most r bits, or among the other m - a - 1 chunks one differs in at most r - 1:
    otherwise the distance would be at least (a + 1)(r + 1) + (m - a - 1) r = T + 1. The m - a - 1
    chunks probed at r - 1 (-1: not probed) are those where the lower radius saves most.
    """
    m = len(widths)
    r, a = divmod(threshold, m)
    direct = _direct_ok(max(widths), n)
    words = -(-sum(widths) // 64)
    saving = [
        _chunk_cost(n, w, r, direct, words) - _chunk_cost(n, w, r - 1, direct, words) for w in widths
    ]
    lower = set(sorted(range(m), key=lambda j: (-saving[j], j))[: m - a - 1])
    return [r - 1 if j in lower else r for j in range(m)]


def _mih_cost(n: int, bits: int, widths: list[int], threshold: int) -> float:
    """Modelled seconds of one MIH query (probes + expected random candidates + overhead)."""
    direct = _direct_ok(max(widths), n)
    radii = pigeonhole_radii(widths, threshold, n)
    words = -(-bits // 64)
    return _C_MIH_FIXED + sum(_chunk_cost(n, w, r, direct, words) for w, r in zip(widths, radii))


def _linear_cost(n: int, bits: int) -> float:
    """Modelled seconds of one scan over the word-major layout."""
    return _C_LIN_FIXED + n * -(-bits // 64) * _C_LIN_WORD


def choose_chunks(n: int, bits: int, threshold: int) -> int:
    """Chunk count m with the lowest modelled query cost at this size and threshold."""
    best_m, best_cost = max(1, -(-bits // 32)), math.inf
    for m in range(max(1, -(-bits // 32)), max(1, bits // 4) + 1):
        cost = _mih_cost(n, bits, _widths(bits, m), threshold)
        if cost < best_cost:
            best_m, best_cost = m, cost
    return best_m


def _expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Positions starts[i] .. starts[i] + counts[i] - 1 of every range, in order."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    if total == 0:
        return np.zeros(0, np.int64)
    pos = np.repeat(starts - ends + counts, counts)
    pos += np.arange(total)
    return pos


def _big_endian_words(arr: np.ndarray) -> np.ndarray:
    """Rows as big-endian uint64 words (zero-padded), so bit i of the hash is bit 63 - i % 64
    of word i // 64 and a chunk is a shift and a mask."""
    words = _to_words(arr)
    return words.byteswap() if words.dtype.byteorder == "=" and np.little_endian else words.copy()


def _stable_order(vals: np.ndarray, width: int) -> np.ndarray:
    """The stable sorting permutation of chunk values of ``width`` <= 32 bits, as numpy's
    16-bit radix sort in one or two passes (low half first), ~2x faster than a comparison
    sort of 10^7 values."""
    if width <= 16:
        return np.argsort(vals.astype(np.uint16), kind="stable")
    order = np.argsort((vals & 0xFFFF).astype(np.uint16), kind="stable")
    high = (vals >> 16).astype(np.uint16)[order]
    return order[np.argsort(high, kind="stable")]


@dataclass(frozen=True)
class _Plan:
    """How a query at one threshold is answered: by the scan, or by these probes."""

    scan: bool
    radii: tuple[int, ...]
    chunk: np.ndarray  # int64, the chunk of each probe
    key: np.ndarray  # int64, the probe's table key before the query's chunk value is XORed in
    mask: np.ndarray  # int64, the bits each probe flips in the query's chunk value


class MultiIndexHashIndex(HashIndex):
    """Multi-index hashing: m disjoint chunks, one bucket table per chunk.

    Pigeonhole: if d(q, x) <= T, some chunk lies within its radius of the query's chunk (see
    :func:`pigeonhole_radii`: most chunks at floor(T/m), the rest one lower), so probing every
    chunk value within those radii finds every true match; each candidate is then checked with
    the full Hamming distance, so the result equals the linear scan's exactly. When the probes
    would cost more than a scan (large T), the query falls back to the scan -- still exact.

    Bucket tables: a chunk of w <= ~log2(2n) bits gets a direct table of 2**w slot pairs
    that hold a bucket's ids when it has at most two (one 8-byte gather per probe, no second
    random access) and point into an overflow array otherwise; a wider chunk keeps its sorted
    values and ids and uses ``np.searchsorted``. All chunks share one flat table, and the
    probes of a threshold are laid out once (:class:`_Plan`), so a query costs about twenty
    numpy calls whatever m is.
    """

    name = "mih"

    def __init__(
        self,
        hashes: np.ndarray,
        *,
        threshold: int | None = None,
        chunks: int | None = None,
        linear_fallback: bool = True,
    ) -> None:
        super().__init__(hashes)
        arr = _as_hash_matrix(hashes)
        n, bits = self._n, self.bits
        if threshold is None:
            threshold = max(0, bits // 8 - 1)  # PDQ's 31 for 256 bits
        self.design_threshold = self._check_threshold(threshold)
        if chunks is None:
            chunks = choose_chunks(n, bits, self.design_threshold)
        if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)):
            raise ConfigError(f"chunks must be an integer, got {chunks!r}")
        if not max(1, -(-bits // 32)) <= chunks <= bits:
            raise ConfigError(f"chunks must lie in {max(1, -(-bits // 32))}..{bits}, got {chunks}")
        self.chunks = int(chunks)
        self.widths = _widths(bits, self.chunks)
        self.linear_fallback = bool(linear_fallback)
        # Row-major words: verifying a candidate touches one cache line, not one per word
        # column; the fallback scan walks the same rows as strided word columns.
        self._rows = _to_words(arr).copy()
        self._starts = np.cumsum([0] + self.widths[:-1]).tolist()
        self._shifts = [(bits - s - w, (1 << w) - 1) for s, w in zip(self._starts, self.widths)]
        self._direct = _direct_ok(max(self.widths), n)
        self._base: list[int] = []
        be = _big_endian_words(arr)
        if self._direct:
            self._build_slots(be)
        else:
            self._build_sorted(be)
        del be
        self._plans: dict[int, _Plan] = {}

    def _build_slots(self, be: np.ndarray) -> None:
        """Direct tables: one pair of slots per chunk value, holding the bucket's ids (-1:
        empty) when it has at most two, else -(start + 2) and -(count + 1) of its ids in the
        overflow array. A lookup is one 8-byte gather per probe; a bucket of up to two ids (most
        of them at the chosen widths, which put about one row in a bucket) needs no second
        random access for its ids."""
        n = self._n
        dtype = np.int32 if self.chunks * n < 2**31 - 2 else np.int64
        slots = np.full((sum(1 << w for w in self.widths), 2), -1, dtype)
        overflow: list[np.ndarray] = []
        base = filled = 0
        for j, w in enumerate(self.widths):
            vals = self._chunk_values(be, j)
            order = _stable_order(vals, w)
            counts = np.bincount(vals, minlength=1 << w)
            starts = np.cumsum(counts) - counts
            tab = slots[base : base + (1 << w)]
            one = (counts >= 1) & (counts <= 2)
            tab[one, 0] = order[starts[one]]
            two = counts == 2
            tab[two, 1] = order[starts[two] + 1]
            big = counts > 2
            if big.any():
                c = counts[big]
                tab[big, 0] = -(filled + np.cumsum(c) - c + 2)
                tab[big, 1] = -(c + 1)
                ids = order[np.repeat(big, counts)]
                overflow.append(ids.astype(dtype))
                filled += ids.size
            self._base.append(base)
            base += 1 << w
        self._slots = slots
        self._slot_words = slots.view(np.int64).ravel() if dtype is np.int32 else None
        self._overflow = np.concatenate(overflow) if overflow else np.zeros(0, dtype)

    def _build_sorted(self, be: np.ndarray) -> None:
        """Wide chunks: every chunk's sorted (chunk << 32 | value) keys and the matching ids,
        searched with ``np.searchsorted``."""
        n = self._n
        self._perm = np.empty(self.chunks * n, np.int32 if n < 2**31 else np.int64)
        tables: list[np.ndarray] = []
        for j, w in enumerate(self.widths):
            vals = self._chunk_values(be, j)
            self._perm[j * n : (j + 1) * n] = _stable_order(vals, w)
            tables.append((j << 32) | vals[self._perm[j * n : (j + 1) * n]])
            self._base.append(j << 32)
        self._table = np.concatenate(tables) if tables else np.zeros(1, np.int64)

    @property
    def nbytes(self) -> int:
        if self._direct:
            return int(self._rows.nbytes + self._slots.nbytes + self._overflow.nbytes)
        return int(self._rows.nbytes + self._perm.nbytes + self._table.nbytes)

    def _chunk_values(self, be: np.ndarray, j: int) -> np.ndarray:
        """Chunk j of every row as int64 from the big-endian words (bit 0 is the most
        significant bit of byte 0); a chunk spans at most two words (w <= 32)."""
        s, w = self._starts[j], self.widths[j]
        k, off = divmod(s, 64)
        mask = np.uint64((1 << w) - 1)
        if off + w <= 64:
            v = be[:, k] >> np.uint64(64 - off - w)
        else:
            spill = off + w - 64
            v = (be[:, k] << np.uint64(spill)) | (be[:, k + 1] >> np.uint64(64 - spill))
        return (v & mask).astype(np.int64)

    def _query_chunks(self, q: np.ndarray) -> np.ndarray:
        x = int.from_bytes(q.tobytes(), "big")
        return np.array([(x >> sh) & mk for sh, mk in self._shifts], dtype=np.int64)

    def radii(self, threshold: int) -> list[int]:
        """Probe radius of each chunk at this threshold (-1: chunk not probed)."""
        return pigeonhole_radii(self.widths, self._check_threshold(threshold), self._n)

    def probe_count(self, threshold: int) -> int:
        """Bucket probes a pigeonhole query at this threshold enumerates."""
        return sum(_ball(w, r) for w, r in zip(self.widths, self.radii(threshold)))

    def _plan(self, t: int) -> _Plan:
        """The probes of threshold t, laid out once; later queries reuse them."""
        plan = self._plans.get(t)
        if plan is not None:
            return plan
        radii = self.radii(t)
        too_many = self.probe_count(t) > MAX_PROBES
        if self._n == 0:
            scan = True
        elif not self.linear_fallback:
            scan = False
        else:
            lin = _linear_cost(self._n, self.bits) * _ROW_SCAN_FACTOR
            scan = too_many or _mih_cost(self._n, self.bits, self.widths, t) >= lin
        cs: list[np.ndarray] = []
        ms: list[np.ndarray] = []
        if not scan and not too_many:
            for j, (w, r) in enumerate(zip(self.widths, radii)):
                mk = _masks(w, r)
                cs.append(np.full(mk.shape[0], j, np.int64))
                ms.append(mk.astype(np.int64))
        chunk = np.concatenate(cs) if cs else np.zeros(0, np.int64)
        mask = np.concatenate(ms) if ms else np.zeros(0, np.int64)
        key = np.asarray(self._base, np.int64)[chunk] if chunk.size else np.zeros(0, np.int64)
        plan = _Plan(scan, tuple(radii), chunk, key, mask)
        self._plans[t] = plan
        return plan

    def uses_scan(self, threshold: int) -> bool:
        """Whether a query at this threshold is answered by the scan (modelled cheaper, or
        more than MAX_PROBES probes). Without the fallback, too many probes is an error."""
        t = self._check_threshold(threshold)
        if not self.linear_fallback and self._n and self.probe_count(t) > MAX_PROBES:
            raise ConfigError(
                f"threshold {t} with {self.chunks} chunks needs "
                f"{self.probe_count(t)} probes (> {MAX_PROBES}); enable linear_fallback"
            )
        return self._plan(t).scan

    def candidates(self, h: np.ndarray, threshold: int) -> np.ndarray:
        """Candidate ids (with repeats) whose some chunk lies within its radius of the query's."""
        q = self._check_hash(h)
        t = self._check_threshold(threshold)
        if self.probe_count(t) > MAX_PROBES:
            raise ConfigError(f"threshold {t} needs more than {MAX_PROBES} probes")
        plan = self._plan(t)
        if plan.scan:  # the scan plan lists no probes; enumerate them for the caller anyway
            plan = _Plan(False, plan.radii, *self._probe_arrays(plan.radii))
        return self._candidates(q, plan)

    def _probe_arrays(self, radii: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cs = [np.full(_ball(w, r), j, np.int64) for j, (w, r) in enumerate(zip(self.widths, radii))]
        ms = [_masks(w, r).astype(np.int64) for w, r in zip(self.widths, radii)]
        chunk = np.concatenate(cs)
        return chunk, np.asarray(self._base, np.int64)[chunk], np.concatenate(ms)

    def _candidates(self, q: np.ndarray, plan: _Plan) -> np.ndarray:
        key = plan.key + (np.take(self._query_chunks(q), plan.chunk) ^ plan.mask)
        return self._lookup(key)[0]

    def _lookup(self, key: np.ndarray, probes: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Ids in the buckets of ``key`` (with repeats) and, if asked, the probe each came from."""
        if not self._direct:
            lo = np.searchsorted(self._table, key, "left")
            hi = np.searchsorted(self._table, key, "right")
            counts = hi - lo
            cand = np.take(self._perm, _expand(lo, counts))
            return cand, np.repeat(np.arange(key.size), counts) if probes else None
        if self._slot_words is not None:
            pairs = np.take(self._slot_words, key).view(self._slots.dtype).reshape(-1, 2)
        else:
            pairs = np.take(self._slots, key, axis=0)
        flat = pairs.reshape(-1)
        src = None
        if probes:
            sel = np.flatnonzero(flat >= 0)
            cand, src = np.take(flat, sel), sel >> 1
        else:
            cand = flat[flat >= 0]
        big = np.flatnonzero(pairs[:, 0] < -1)
        if big.size:
            enc = np.take(pairs, big, axis=0).astype(np.int64)
            counts = -1 - enc[:, 1]
            more = np.take(self._overflow, _expand(-2 - enc[:, 0], counts))
            cand = np.concatenate([cand, more])
            if probes:
                src = np.concatenate([src, np.repeat(big, counts)])
        return cand, src

    def query(self, h: np.ndarray, threshold: int) -> Match:
        q = self._check_hash(h)
        t = self._check_threshold(threshold)
        qw = _to_words(q.reshape(1, -1))[0]
        if self.uses_scan(t):
            return _scan(self._rows.T, qw, t)
        cand = self._candidates(q, self._plan(t))
        if cand.size == 0:
            return _empty_match()
        d = _distances(np.take(self._rows, cand, axis=0).T, qw, slice(None))
        hit = np.flatnonzero(d <= t)
        if hit.size == 0:
            return _empty_match()
        ids = np.take(cand, hit).astype(np.int64)
        dist = np.take(d, hit).astype(np.int32)
        if hit.size > 1:  # found through several chunks: sort by id, keep one of each
            order = np.argsort(ids, kind="stable")
            ids, dist = ids[order], dist[order]
            first = np.empty(ids.size, bool)
            first[0] = True
            np.not_equal(ids[1:], ids[:-1], out=first[1:])
            if not first.all():
                ids, dist = ids[first], dist[first]
        return Match(ids, dist)

    def query_many(self, hs: np.ndarray, threshold: int) -> list[Match]:
        """All queries' probes, candidates and distances in one pass of numpy calls per batch
        of queries (about 2**20 probes), so the per-call overhead is shared; the answer for
        each row equals :meth:`query`'s."""
        arr = self._check_many(hs)
        t = self._check_threshold(threshold)
        if arr.shape[0] == 0:
            return []
        if self.uses_scan(t):
            return [self.query(row, t) for row in arr]
        plan = self._plan(t)
        step = max(1, (1 << 20) // max(1, plan.chunk.size))
        out: list[Match] = []
        for s in range(0, arr.shape[0], step):
            out += self._query_batch(arr[s : s + step], plan, t)
        return out

    def _query_batch(self, qs: np.ndarray, plan: _Plan, t: int) -> list[Match]:
        nq, n = qs.shape[0], self._n
        qc = np.stack([self._query_chunks(q) for q in qs])
        key = (plan.key[None, :] + (np.take(qc, plan.chunk, axis=1) ^ plan.mask[None, :])).ravel()
        cand, src = self._lookup(key, probes=True)
        if cand.size == 0:
            return [_empty_match() for _ in range(nq)]
        cand = cand.astype(np.int64)
        qid = src // max(1, plan.chunk.size)
        qw = _to_words(qs)
        g = np.take(self._rows, cand, axis=0)
        d = np.bitwise_count(g[:, 0] ^ np.take(qw[:, 0], qid)).astype(np.uint16)
        for k in range(1, qw.shape[1]):
            d += np.bitwise_count(g[:, k] ^ np.take(qw[:, k], qid))
        hit = np.flatnonzero(d <= t)
        pair = qid[hit] * n + cand[hit]  # sort by (query, id) and drop repeats in one go
        order = np.argsort(pair, kind="stable")
        pair, dist = pair[order], d[hit][order]
        first = np.r_[True, pair[1:] != pair[:-1]] if pair.size else np.zeros(0, bool)
        pair, dist = pair[first], dist[first]
        bounds = np.searchsorted(pair // max(n, 1), np.arange(nq + 1))
        ids = pair % max(n, 1)
        return [Match(ids[a:b].copy(), dist[a:b].astype(np.int32))
                for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]

    def nearest(self, h: np.ndarray) -> tuple[int, int]:
        """Grow the threshold in steps of m (radius 0, 1, ...) until something matches; each
        step is exact, so the first non-empty answer holds the true nearest."""
        q = self._check_hash(h)
        if self._n == 0:
            raise InputError("nearest() on an empty index")
        radius = 0
        while True:
            t = min(self.bits, self.chunks * (radius + 1) - 1)
            if self.probe_count(t) > MAX_PROBES or (self.linear_fallback and self.uses_scan(t)):
                return _scan_nearest(self._rows.T, _to_words(q.reshape(1, -1))[0])
            m = self.query(q, t)
            if len(m):
                i = int(np.argmin(m.distances))  # first minimum = lowest id (ids ascending)
                return int(m.ids[i]), int(m.distances[i])
            radius += 1


INDEXES: dict[str, type[HashIndex]] = {
    cls.name: cls for cls in (ExactIndex, LinearScanIndex, MultiIndexHashIndex)
}


def get_index(name: str, hashes: np.ndarray, **params: Any) -> HashIndex:
    """Build the index registered under ``name`` (exact, linear, mih) over ``hashes``."""
    try:
        cls = INDEXES[name]
    except KeyError:
        raise UnknownNameError("index", name, list(INDEXES)) from None
    try:
        return cls.build(hashes, **params)
    except TypeError as exc:  # an unknown keyword for this index
        raise ConfigError(f"index {name!r}: {exc}") from None


def closest_within(index: HashIndex | None, h: np.ndarray, threshold: int) -> tuple[int, int] | None:
    """(id, distance) of the nearest list hash within ``threshold`` (lowest id on ties), or None.

    The one matching rule every scheme that sees a hash in the clear applies, on the index it
    chose (a device's plain list, a provider's MIH index); ``None`` for an empty or absent list.
    """
    if index is None or len(index) == 0:
        return None
    m = index.query(h, threshold)
    if len(m.ids) == 0:
        return None
    i = int(np.argmin(m.distances))          # ids are ascending, so argmin keeps the lowest id
    return int(m.ids[i]), int(m.distances[i])
