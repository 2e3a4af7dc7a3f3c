"""Device bundle cost against list size: what every device stores, and what a 1% update costs.

For each list size the known list is padded with uniformly random **synthetic** hashes
(``KnownHashDatabase.padded``; every row says so). Up to ``measure_max`` entries each scheme's
own ``provider_setup`` builds the bundle and its length is measured. Above that:

- Bloom schemes: pybloom-live's serialised size depends only on (capacity, error rate), so an
  empty filter of the right capacity is serialised and measured (label ``measured-empty``); for
  the chunk filter the capacity is the exact number of distinct (chunk, value) keys of the
  padded list, counted with numpy.
- the plain list: 32 bytes per entry plus a fixed header, fitted on the measured points
  (label ``extrapolated``).
- hash upload / partial hashing: the bundle is the provider's public key, whatever the size.

Update when the list grows by 1%: the plain list ships the new entries and the new root; a
Bloom filter provisioned with 1% headroom ships the compressed XOR of its bit array (measured
up to ``measure_max``, per-entry extrapolated above); hash upload ships nothing.

OpenMined PSI's setup message (GCS and Bloom, fpr 1e-6) is measured live on the same
synthetic items up to ``psi_max`` and extrapolated per element above (its size is linear).
"""
from __future__ import annotations

import math
import time
import zlib
from typing import Any, Callable

import numpy as np

from e2eebench.clientside.hashing import get_hasher
from e2eebench.protocols.channel import Channel, MessageContext, PartyClock
from e2eebench.protocols.errors import ConfigError
from e2eebench.protocols.registry import scheme_class
from e2eebench.server.database import KnownHashDatabase

SCHEMES = ("on-device-list", "on-device-bloom", "on-device-lsh-bloom", "hash-upload", "partial-hash")
MAX_SIZE = 10**7


def _ctx(seed: int) -> MessageContext:
    return MessageContext("setup", "provider", Channel(), PartyClock(), np.random.default_rng(seed))


def synthetic_db(n: int, seed: int) -> KnownHashDatabase:
    """n random 256-bit hashes: one base entry padded with synthetic ones (cost only)."""
    base = KnownHashDatabase(["synthetic-base"], {"pdq": np.random.default_rng([seed, 1]).integers(
        0, 256, (1, 32), dtype=np.uint8)})
    return base.padded(n, seed=seed)


def _synthetic_chunk_keys(n: int, seed: int, chunks: int, block: int = 1 << 20) -> int:
    """Distinct chunk keys of n random hashes, generated block by block (10^7 x 32 B never
    sits in memory at once). Only for chunks of at most 16 bits (bincount per position)."""
    w = 32 // chunks
    if w > 2:
        raise ConfigError("streamed chunk counting supports chunks of 8 or 16 bits")
    seen = np.zeros((chunks, 1 << (8 * w)), bool)
    rng = np.random.default_rng([seed, 2])
    for start in range(0, n, block):
        hs = rng.integers(0, 256, (min(block, n - start), 32), dtype=np.uint8)
        for j in range(chunks):
            v = hs[:, j * w].astype(np.int64)
            if w == 2:
                v = (v << 8) | hs[:, j * w + 1]
            seen[j, v] = True
    return int(seen.sum())


def _bloom_size(capacity: int, fpr: float) -> int:
    from pybloom_live import BloomFilter

    from e2eebench.protocols.ondevice import bloom_to_bytes
    return len(bloom_to_bytes(BloomFilter(max(1, capacity), fpr)))


def _bloom_delta(keys_old: list[bytes], keys_new: list[bytes], fpr: float) -> int:
    """Compressed XOR of a filter provisioned for the grown list, before and after the growth."""
    from pybloom_live import BloomFilter
    bf = BloomFilter(len(keys_old) + len(keys_new), fpr)
    for k in keys_old:
        bf.add(k)
    before = np.frombuffer(bf.bitarray.tobytes(), np.uint8).copy()
    for k in keys_new:
        bf.add(k)
    after = np.frombuffer(bf.bitarray.tobytes(), np.uint8)
    return len(zlib.compress((before ^ after).tobytes(), 9))


def _chunk_keys(hs: np.ndarray, chunks: int) -> int:
    """Distinct (chunk index, chunk value) keys, counted without building Python objects."""
    w = hs.shape[1] // chunks
    total = 0
    for j in range(chunks):
        col = hs[:, j * w:(j + 1) * w]
        if w <= 2:
            v = col[:, 0].astype(np.int64) << 8 * (w - 1)
            if w == 2:
                v |= col[:, 1]
            total += int(np.count_nonzero(np.bincount(v, minlength=1 << (8 * w))))
        else:
            total += len(np.unique(np.ascontiguousarray(col).view(f"V{w}")))
    return total


def bench_bundle(sizes: list[int], *, seed: int = 0, fpr: float = 1e-6, measure_max: int = 100_000,
                 psi_max: int = 10_000, lsh_chunks: int = 16, lsh_min_hits: int = 2, n_timing: int = 20,
                 progress: Callable[[str, int, int], None] | None = None) -> list[dict[str, Any]]:
    """One row per (scheme, list size): bundle bytes, 1% update bytes, how each was obtained, and
    (at measured sizes) client/provider CPU ms per image over ``n_timing`` unrelated images."""
    from e2eebench.evaluation.data.corpora import get_corpus
    timing_images = ([it.image for it in get_corpus("dead-leaves", seed=seed + 31337, size=256).items(n_timing)]
                     if n_timing > 0 else [])
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_SIZE:
        raise ConfigError(f"--sizes must be integers in 1..{MAX_SIZE}, got {sizes}")
    if not 0 < fpr < 1:
        raise ConfigError(f"--fpr must lie in (0, 1), got {fpr}")
    pdq = get_hasher("pdq")
    rows: list[dict[str, Any]] = []
    schemes = {
        "on-device-list": scheme_class("on-device-list")(pdq),
        "on-device-bloom": scheme_class("on-device-bloom")(pdq, fpr=fpr),
        "on-device-lsh-bloom": scheme_class("on-device-lsh-bloom")(pdq, fpr=fpr, chunks=lsh_chunks,
                                                                     min_hits=lsh_min_hits),
        "hash-upload": scheme_class("hash-upload")(pdq),
        "partial-hash": scheme_class("partial-hash")(pdq),
    }
    list_fit: list[tuple[int, int]] = []
    delta_per_entry: dict[str, float] = {}
    psi_per_elem: dict[str, float] = {}
    steps = len(sizes) * (len(schemes) + 1)
    done = 0
    for n in sizes:
        grown = max(1, math.ceil(n * 0.01))
        small = n <= max(measure_max, psi_max, 10**6)  # up to 10^6 the hashes fit in memory
        if small:
            db = synthetic_db(n + grown, seed)
            hs_all = db.hashes["pdq"]
            cur = KnownHashDatabase(db.ids[:n], {"pdq": hs_all[:n]}, synthetic=n - 1)
            new = hs_all[n:]
        else:
            hs_all = cur = new = None
        for name, s in schemes.items():
            row: dict[str, Any] = {"scheme": name, "list_size": n, "synthetic": True}
            t0 = time.perf_counter()
            if n <= measure_max:
                pstate, bundle = s.provider_setup(cur, _ctx(seed))
                row["bundle_bytes"], row["bundle_label"] = len(bundle), "measured"
                row["setup_s"] = round(time.perf_counter() - t0, 4)
                if timing_images:
                    row.update(_time_messages(s, pstate, bundle, timing_images, seed))
            if name == "on-device-list":
                from e2eebench.protocols import wire
                if n <= measure_max:
                    list_fit.append((n, row["bundle_bytes"]))
                    upd = wire.pack(b"ODLU", [b"\x00" * 32, wire.hashes_to_bytes(new)])
                    row["update_bytes"], row["update_label"] = len(upd), "measured"
                else:
                    a, b = _linear_fit(list_fit)
                    row["bundle_bytes"], row["bundle_label"] = int(round(a + b * n)), "extrapolated"
                    row["update_bytes"] = len(wire.pack(b"ODLU", [b"\x00" * 32, b""])) + 32 * grown
                    row["update_label"] = "extrapolated"
                row["update_note"] = "appended entries + new root"
            elif name in ("on-device-bloom", "on-device-lsh-bloom"):
                lsh = name == "on-device-lsh-bloom"
                if not lsh:
                    n_keys = n
                elif hs_all is not None:
                    n_keys = _chunk_keys(hs_all[:n], lsh_chunks)
                else:
                    n_keys = _synthetic_chunk_keys(n, seed, lsh_chunks)
                if n > measure_max:
                    overhead = _bundle_overhead(s, fpr)
                    row["bundle_bytes"] = _bloom_size(n_keys, fpr) + overhead
                    row["bundle_label"] = "measured-empty"
                row["filter_keys"] = n_keys
                if lsh:
                    occ = n_keys / lsh_chunks / float(1 << (256 // lsh_chunks))
                    row["random_match_prob"] = _binom_tail(lsh_chunks, min(1.0, occ + fpr), lsh_min_hits)
                if n <= measure_max:
                    from e2eebench.protocols.ondevice import hash_chunks
                    if lsh:
                        old_k = sorted({k for h in hs_all[:n] for k in hash_chunks(h, lsh_chunks)})
                        new_k = sorted({k for h in new for k in hash_chunks(h, lsh_chunks)} - set(old_k))
                    else:
                        old_k, new_k = [h.tobytes() for h in hs_all[:n]], [h.tobytes() for h in new]
                    d = _bloom_delta(old_k, new_k, fpr)
                    if new_k:
                        delta_per_entry[name] = d / len(new_k)
                    row["update_bytes"], row["update_label"] = d, "measured"
                    row["update_new_keys"] = len(new_k)
                else:
                    # per new filter key, times the exact count of keys the 1% growth adds
                    if not lsh:
                        n_new = grown
                    elif hs_all is not None:
                        n_new = _chunk_keys(hs_all[:n + grown], lsh_chunks) - n_keys
                    else:
                        n_new = _synthetic_chunk_keys(n + grown, seed, lsh_chunks) - n_keys
                    per = delta_per_entry.get(name)
                    row["update_new_keys"] = n_new
                    row["update_bytes"] = (min(int(round(per * n_new)), row["bundle_bytes"])
                                           if per is not None else None)
                    row["update_label"] = "extrapolated"
                row["update_note"] = "zlib XOR of a filter with 1% headroom (full re-download otherwise)"
            else:
                if n > measure_max:
                    tiny = KnownHashDatabase(["t"], {"pdq": np.zeros((1, 32), np.uint8)})
                    _, bundle = s.provider_setup(tiny, _ctx(seed))
                    row["bundle_bytes"], row["bundle_label"] = len(bundle), "measured-constant"
                row["update_bytes"], row["update_label"] = 0, "measured"
                row["update_note"] = "nothing: the list stays at the provider"
            row["build_s"] = round(time.perf_counter() - t0, 4)
            rows.append(row)
            done += 1
            if progress:
                progress("bundle", done, steps)
        rows.extend(_psi_rows(n, hs_all[:n] if hs_all is not None else None, fpr, psi_max, psi_per_elem))
        done += 1
        if progress:
            progress("bundle", done, steps)
    return rows


def _time_messages(s, pstate, bundle: bytes, images: list, seed: int) -> dict[str, Any]:
    """Mean process-CPU ms of the scheme's device role (hashing included) and provider role."""
    from e2eebench.protocols.channel import DEVICE, PROVIDER
    dstate = s.device_load(bundle, "acct-bench", _ctx(seed))
    dev, prov = [], []
    for i, im in enumerate(images):
        c = MessageContext(f"bench-{i}", "acct-bench", Channel(), PartyClock(), np.random.default_rng([seed, i]))
        with c.role(DEVICE):
            prep = s.device_prepare(dstate, im, c)
        with c.role(PROVIDER):
            s.provider_receive(pstate, prep.payload, c)
        dev.append(c.clock.totals[DEVICE])
        prov.append(c.clock.totals[PROVIDER])
    return {"client_ms": round(1e3 * float(np.mean(dev)), 3), "provider_ms": round(1e3 * float(np.mean(prov)), 3),
            "timing_n": len(images)}


def _bundle_overhead(s, fpr: float) -> int:
    """Bundle bytes beyond the filter itself (fields, key, digest), measured on a tiny list."""
    from e2eebench.protocols.ondevice import bloom_to_bytes
    tiny = KnownHashDatabase(["t"], {"pdq": np.zeros((1, 32), np.uint8)})
    _, bundle = s.provider_setup(tiny, _ctx(0))
    return len(bundle) - len(bloom_to_bytes(s.build_filter(tiny.hashes["pdq"])))


def _linear_fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    if len(points) < 2:
        n, b = points[-1]
        return float(b - 32 * n), 32.0
    x, y = np.array(points, float).T
    slope, icept = np.polyfit(x, y, 1)
    return float(icept), float(slope)


def _binom_tail(m: int, p: float, k: int) -> float:
    """P(at least k of m chunk positions hit) for a random hash: how often it falsely matches."""
    return float(sum(math.comb(m, i) * p**i * (1 - p) ** (m - i) for i in range(k, m + 1)))


def _psi_rows(n: int, hs: np.ndarray | None, fpr: float, psi_max: int,
              per_elem: dict[str, float]) -> list[dict[str, Any]]:
    import private_set_intersection.python as psi
    out = []
    structs = (("GCS", psi.DataStructure.GCS), ("BLOOM_FILTER", psi.DataStructure.BLOOM_FILTER))
    server = psi.server.CreateWithNewKey(True) if n <= psi_max and hs is not None else None
    items = [h.tobytes() for h in hs] if server is not None else None
    for label, ds in structs:
        row: dict[str, Any] = {"scheme": f"openmined-psi ({label})", "list_size": n, "synthetic": True,
                               "update_bytes": None, "update_note": "a new setup message (no delta format)"}
        if server is not None:
            t0 = time.perf_counter()
            size = len(server.CreateSetupMessage(fpr, 1, items, ds).SerializeToString())
            row.update(bundle_bytes=size, bundle_label="measured", build_s=round(time.perf_counter() - t0, 4))
            per_elem[label] = size / n
        elif label in per_elem:
            row.update(bundle_bytes=int(round(per_elem[label] * n)), bundle_label="extrapolated")
        else:
            row.update(bundle_bytes=None, bundle_label="not measured")
        row["update_label"] = "n/a"
        out.append(row)
    return out


def lsh_accuracy(sizes: list[int], configs: list[tuple[int, int]], *, n_known: int = 40,
                 n_benign: int = 300, transforms: tuple[str, ...] = ("jpeg:q=50", "resize:0.5"),
                 seed: int = 0) -> list[dict[str, Any]]:
    """Measured recall and FPR of the chunk Bloom filter as the list grows.

    The list is ``n_known`` real dead-leaves hashes padded with synthetic ones up to each
    size; positives are the known images under ``transforms``, negatives ``n_benign``
    unrelated images. Plain fuzzy matching (d <= 31) on the same probes is the reference.
    """
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.evaluation.run.stats import wilson
    from e2eebench.evaluation.data.transforms import parse_transform
    pdq = get_hasher("pdq")
    items = get_corpus("dead-leaves", seed=seed + 77, size=256).items(n_known + n_benign)
    known, benign = items[:n_known], items[n_known:]
    pos = [pdq.hash(parse_transform(t).apply(k.image, seed=i)) for t in transforms for i, k in enumerate(known)]
    neg = [pdq.hash(b.image) for b in benign]
    base = KnownHashDatabase.from_images(known, [pdq], with_features=False)
    rows = []
    for n in sorted(set(sizes)):
        if n < n_known or n > 10**6:
            raise ConfigError(f"sizes must lie in {n_known}..10^6 (the list starts with {n_known} real hashes), got {n}")
        db = base.padded(n, seed=seed)
        hs = db.hashes["pdq"]
        ref = sum(bool((np.bitwise_count(hs ^ h).sum(1) <= pdq.default_threshold).any()) for h in pos)
        for chunks, min_hits in configs:
            s = scheme_class("on-device-lsh-bloom")(pdq, chunks=chunks, min_hits=min_hits)
            bf = s.build_filter(hs)
            tp = sum(len(s.chunk_hits(bf, h)) >= min_hits for h in pos)
            fp = sum(len(s.chunk_hits(bf, h)) >= min_hits for h in neg)
            r, f = wilson(tp, len(pos)), wilson(fp, len(neg))
            rows.append({"list_size": n, "synthetic": n - n_known, "chunks": chunks, "min_hits": min_hits,
                         "recall": r.value, "recall_ci": [r.ci_low, r.ci_high], "positives": len(pos),
                         "fpr": f.value, "fpr_ci": [f.ci_low, f.ci_high], "negatives": len(neg),
                         "fuzzy_recall_reference": ref / len(pos), "filter_keys": bf.count})
    return rows
