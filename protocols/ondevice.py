"""On-device schemes: all detection on the device ("device-related" in the EU mapping).

``on-device-list``: the device bundle is the plain hash list (with the provider's report
key and the list's root digest, which the device recomputes so it can tell it holds the
same list as everyone else). The device hashes each image before encryption and scans
the list at the hasher's threshold. On a match, depending on ``action``:

- ``report`` (default): the device seals a report (matched list entry, distance, message
  id) to the provider's key and attaches it as the detection payload; on no match it
  attaches a sealed cover of the same size (:mod:`padded_report`), so neither the recipient
  nor a network observer can read the verdict from the payload; the provider learns it.
- ``block``: the device refuses to send; nothing reaches the provider ("upload prevention").
- ``warn``: the user is told and the message goes out without a report.

Whatever the action, the device holds the list: an offline membership oracle and
``db_exposure_bits`` = the whole list.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import Hasher
from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair
from e2eebench.protocols.errors import AuthenticationFailed, ConfigError, MalformedMessage, ReplayError
from e2eebench.protocols.framework import ACTION_PARAM, Param, Prepared, Scheme, register
from e2eebench.protocols.padded_report import open_fixed, seal_fixed
from e2eebench.server.database import KnownHashDatabase, merkle_root, published_root
from e2eebench.server.index import closest_within, get_index

REPORT_INFO = b"e2eebench on-device report v1"
REPORT_SIZE = 256  # plaintext bytes under the AEAD of every detection payload, report or cover


class _OnDeviceBase(Scheme):
    """Shared report plumbing: sealing a report to the provider, acting on a match."""

    family = "on-device"
    eu_category = "device"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    leakage = {DEVICE: ("verdict", "list"), PROVIDER: ("verdict",)}
    leakage_text = {DEVICE: "the verdict per image and the list (offline membership oracle)",
                    PROVIDER: "the verdict per image message (action report); nothing else",
                    RECIPIENT: "nothing (one payload size whatever the verdict)"}

    @property
    def detector(self) -> str:
        return PROVIDER if self.p.get("action", "report") == "report" else DEVICE

    def _report_keys(self, ctx: MessageContext) -> KeyPair:
        return KeyPair.generate(ctx.random_bytes)

    def _act(self, state: dict, match: bool, report: dict, ctx: MessageContext) -> Prepared:
        ctx.verdict(DEVICE, match)
        action = self.p["action"]
        if not match:  # a cover of the report's size: the verdict is not in the payload's length
            return Prepared(seal_fixed(state["report_key"], None, ctx, REPORT_INFO, REPORT_SIZE)
                            if action == "report" else b"")
        if action == "block":
            return Prepared(b"", send=False, notice="blocked: matches the known list")
        if action == "warn":
            return Prepared(b"", notice="warning: matches the known list")
        return Prepared(seal_fixed(state["report_key"], report, ctx, REPORT_INFO, REPORT_SIZE))

    def _open_report(self, state: dict, payload: bytes, ctx: MessageContext) -> None:
        """Open the fixed-size payload once per (account, message): a second one is a replay."""
        key, seen = (ctx.account, ctx.message_id), state.setdefault("seen", set())
        if payload and key in seen:
            raise ReplayError(f"{self.name}: a payload for this message was already received")
        open_fixed(state["keys"], payload, ctx, REPORT_INFO, REPORT_SIZE)
        if payload:
            seen.add(key)


@register
class OnDeviceList(_OnDeviceBase):
    name = "on-device-list"
    verdict_to = "device; provider on report"
    trust = "device software (honest client) and the list shipped to every device"
    matching = "fuzzy"
    description = "Plain hash list on the device, fuzzy match at the hasher threshold, sealed report on match"
    params = (ACTION_PARAM,)

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        keys = self._report_keys(ctx)
        hs = db.hashes_for(self.hasher.name)
        name, thr = self.hasher.name.encode(), wire.u32(self.threshold)
        root = self.bundle_root(name, thr, keys.public_bytes, merkle_root([h.tobytes() for h in hs]))
        bundle = wire.pack(b"ODL1", [name, thr, keys.public_bytes, root, wire.hashes_to_bytes(hs)])
        return {"keys": keys}, bundle

    @staticmethod
    def bundle_root(name: bytes, threshold: bytes, report_key: bytes, list_root: bytes) -> bytes:
        """The published root: the list's Merkle root bound to everything that decides a verdict."""
        return published_root(list_root, [("hasher", name), ("threshold", threshold), ("report_key", report_key)])

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        name, thr, key, root, blob = wire.unpack(b"ODL1", bundle, 5, "on-device-list bundle")
        if name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage(f"bundle is for hasher {name!r}, device uses {self.hasher.name}")
        hs = wire.bytes_to_hashes(blob, self.hasher.nbytes)
        if len(thr) != 4 or len(key) != 32:
            raise MalformedMessage("bundle threshold must be 4 bytes and report key 32 bytes")
        list_root = merkle_root([h.tobytes() for h in hs])   # what a hotline can publish for its list
        if self.bundle_root(name, thr, key, list_root) != root:
            raise AuthenticationFailed("bundle's list, threshold or report key does not match its root digest")
        ctx.learn(DEVICE, "database", len(hs))
        return {"hashes": hs, "index": get_index("linear", hs) if len(hs) else None,
                "threshold": wire.read_u32(thr), "report_key": key, "root": list_root, "bundle_root": root}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        h = self.hasher.hash(image)
        hit = closest_within(state["index"], h, state["threshold"])
        report = {"entry": hit[0], "distance": hit[1]} if hit is not None else {}
        return self._act(state, hit is not None, report, ctx)

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        self._open_report(state, payload, ctx)


# -- Bloom-filter bundles ---------------------------------------------------------------------
# The device stores a pybloom-live filter instead of the list: smaller, and it no longer spells
# the hashes out, but it still answers "is this in the list?" offline for any image (the
# membership oracle is unchanged) and every positive is subject to the configured FPR.
BLOOM_FPR_PARAM_DEFAULT = 1e-6


def bloom_to_bytes(bf: Any) -> bytes:
    """Serialise a pybloom-live filter (header + bit array), exactly what the device stores."""
    import io
    buf = io.BytesIO()
    bf.tofile(buf)
    return buf.getvalue()


def bloom_from_bytes(data: bytes, what: str = "bloom filter") -> Any:
    """Parse a serialised filter; any inconsistency (header vs length, bad rate) is MalformedMessage."""
    import io
    import math
    import struct

    from pybloom_live import BloomFilter
    fmt = BloomFilter.FILE_FMT
    hl = struct.calcsize(fmt)
    if len(data) < hl:
        raise MalformedMessage(f"{what}: {len(data)} bytes is shorter than its header")
    rate, slices, per_slice, capacity, count = struct.unpack(fmt, data[:hl])
    nbits = slices * per_slice
    if not (0 < rate < 1) or math.isnan(rate) or slices < 1 or per_slice < 1 or count > capacity \
            or (nbits + 7) // 8 != len(data) - hl:
        raise MalformedMessage(f"{what}: header does not match its {len(data) - hl} bytes of bits")
    try:
        return BloomFilter.fromfile(io.BytesIO(data))
    except (ValueError, struct.error, OverflowError) as e:
        raise MalformedMessage(f"{what}: does not parse ({e.__class__.__name__})") from None


def _sealed_bundle(magic: bytes, fields: list[bytes]) -> bytes:
    """Bundle fields plus a SHA-256 digest over all of them: the digest a provider would publish,
    so every device (and an auditor) can check it holds the same bundle as everyone else."""
    from e2eebench.protocols.crypto import sha256
    body = wire.pack(magic, fields)
    return wire.pack(magic, fields + [sha256(body)])


def _open_bundle(magic: bytes, bundle: bytes, count: int, what: str) -> list[bytes]:
    from e2eebench.protocols.crypto import sha256
    fields = wire.unpack(magic, bundle, count + 1, what)
    if sha256(wire.pack(magic, fields[:-1])) != fields[-1]:
        raise AuthenticationFailed(f"{what}: contents do not match the bundle digest")
    return fields[:-1]


def _bloom_exposure_bits(n: int, fpr: float) -> float:
    """Information a membership filter with false-positive rate ``fpr`` gives about ``n`` entries:
    each entry is pinned down to a ~fpr fraction of the hash space, i.e. log2(1/fpr) bits."""
    import math
    return float(n * math.log2(1.0 / fpr))


BLOOM_FPR_PARAM = Param("fpr", BLOOM_FPR_PARAM_DEFAULT, "configured Bloom false-positive rate", None, float)


@register
class OnDeviceBloom(_OnDeviceBase):
    name = "on-device-bloom"
    verdict_to = "device; provider on report"
    trust = "device software (honest client) and the filter shipped to every device"
    matching = "exact"  # one-sided error: false positives at the configured FPR, never a miss
    description = "Bloom filter (pybloom-live) of the exact hashes on the device; exact match, sealed report on hit"
    params = (ACTION_PARAM, BLOOM_FPR_PARAM)

    def __init__(self, hasher: Hasher, threshold: int | None = None, **params: Any):
        super().__init__(hasher, threshold, **params)
        if not 0 < self.p["fpr"] < 1:
            raise ConfigError(f"parameter 'fpr' must lie in (0, 1), got {self.p['fpr']}")

    def build_filter(self, hashes: np.ndarray) -> Any:
        from pybloom_live import BloomFilter
        bf = BloomFilter(max(1, len(hashes)), self.p["fpr"])
        for h in hashes:
            bf.add(h.tobytes())
        return bf

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        keys = self._report_keys(ctx)
        bf = self.build_filter(db.hashes_for(self.hasher.name))
        bundle = _sealed_bundle(b"ODB1", [self.hasher.name.encode(), keys.public_bytes, bloom_to_bytes(bf)])
        return {"keys": keys}, bundle

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        name, key, blob = _open_bundle(b"ODB1", bundle, 3, "on-device-bloom bundle")
        if name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage(f"bundle is for hasher {name!r}, device uses {self.hasher.name}")
        if len(key) != 32:
            raise MalformedMessage("bundle report key must be 32 bytes")
        bf = bloom_from_bytes(blob, "on-device-bloom filter")
        ctx.learn(DEVICE, "database", {"bloom_entries": bf.count, "fpr": bf.error_rate})
        return {"filter": bf, "report_key": key}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        h = self.hasher.hash(image)
        match = h.tobytes() in state["filter"]
        return self._act(state, match, {"hash_in_filter": True} if match else {}, ctx)

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        self._open_report(state, payload, ctx)

    def device_db_exposure(self, db: KnownHashDatabase) -> tuple[float, str]:
        n = len(db)
        return (_bloom_exposure_bits(n, self.p["fpr"]),
                f"{n} entries x log2(1/fpr={self.p['fpr']:g}) bits: each entry pinned to a fpr share "
                f"of the hash space; any candidate hash can be confirmed offline")


CHUNKS_PARAM = Param("chunks", 16, "number of byte-aligned chunks the hash is cut into (8, 16 or 32)",
                     (8, 16, 32), int)
MIN_HITS_PARAM = Param("min_hits", 2, "chunk hits (chunk index, value) in the filter that make a match",
                       None, int)


def hash_chunks(h: np.ndarray, chunks: int) -> list[bytes]:
    """Keys (chunk index, chunk value) of one packed hash; chunks are byte-aligned slices."""
    raw = np.ascontiguousarray(h, np.uint8).tobytes()
    w = len(raw) // chunks
    return [bytes([j]) + raw[j * w:(j + 1) * w] for j in range(chunks)]


@register
class OnDeviceLshBloom(_OnDeviceBase):
    name = "on-device-lsh-bloom"
    verdict_to = "device; provider on report"
    trust = "device software (honest client) and the filter shipped to every device"
    matching = "chunked"  # hits may come from different entries; no Hamming check is possible
    description = ("Bloom filter of (chunk index, chunk value) pairs of every list hash; a match is "
                   "at least min_hits chunks found (fuzzy, multi-index style)")
    params = (ACTION_PARAM, BLOOM_FPR_PARAM, CHUNKS_PARAM, MIN_HITS_PARAM)

    def __init__(self, hasher: Hasher, threshold: int | None = None, **params: Any):
        super().__init__(hasher, threshold, **params)
        if not 0 < self.p["fpr"] < 1:
            raise ConfigError(f"parameter 'fpr' must lie in (0, 1), got {self.p['fpr']}")
        if hasher.nbytes % self.p["chunks"]:
            raise ConfigError(f"parameter 'chunks' must divide the {hasher.nbytes}-byte hash, got {self.p['chunks']}")
        if not 1 <= self.p["min_hits"] <= self.p["chunks"]:
            raise ConfigError(f"parameter 'min_hits' must lie in 1..chunks={self.p['chunks']}, got {self.p['min_hits']}")

    def build_filter(self, hashes: np.ndarray) -> Any:
        from pybloom_live import BloomFilter
        keys = {k for h in hashes for k in hash_chunks(h, self.p["chunks"])}
        bf = BloomFilter(max(1, len(keys)), self.p["fpr"])
        for k in sorted(keys):
            bf.add(k)
        return bf

    def chunk_hits(self, bf: Any, h: np.ndarray) -> list[int]:
        return [j for j, k in enumerate(hash_chunks(h, self.p["chunks"])) if k in bf]

    def plaintext_match(self, db: KnownHashDatabase, h: np.ndarray) -> bool:
        """The chunk rule on the plain list (what the filter approximates up to its false positives)."""
        keys = {k for row in db.hashes_for(self.hasher.name) for k in hash_chunks(row, self.p["chunks"])}
        return sum(k in keys for k in hash_chunks(h, self.p["chunks"])) >= self.p["min_hits"]

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        keys = self._report_keys(ctx)
        bf = self.build_filter(db.hashes_for(self.hasher.name))
        rule = wire.u32(self.p["chunks"]) + wire.u32(self.p["min_hits"])
        bundle = _sealed_bundle(b"OLB1", [self.hasher.name.encode(), rule, keys.public_bytes, bloom_to_bytes(bf)])
        return {"keys": keys}, bundle

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        name, rule, key, blob = _open_bundle(b"OLB1", bundle, 4, "on-device-lsh-bloom bundle")
        if name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage(f"bundle is for hasher {name!r}, device uses {self.hasher.name}")
        if len(rule) != 8 or len(key) != 32:
            raise MalformedMessage("bundle rule must be 8 bytes and report key 32 bytes")
        chunks, min_hits = wire.read_u32(rule[:4]), wire.read_u32(rule[4:])
        if (chunks, min_hits) != (self.p["chunks"], self.p["min_hits"]):
            raise MalformedMessage(f"bundle rule ({chunks} chunks, {min_hits} hits) differs from the device's")
        bf = bloom_from_bytes(blob, "on-device-lsh-bloom filter")
        ctx.learn(DEVICE, "database", {"bloom_entries": bf.count, "fpr": bf.error_rate})
        return {"filter": bf, "report_key": key}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        hits = self.chunk_hits(state["filter"], self.hasher.hash(image))
        match = len(hits) >= self.p["min_hits"]
        return self._act(state, match, {"chunk_hits": hits} if match else {}, ctx)

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        self._open_report(state, payload, ctx)

    def device_db_exposure(self, db: KnownHashDatabase) -> tuple[float, str]:
        """Per chunk position the device can enumerate all 2^w values against the filter and so
        recover the set of chunk values (w <= 32 bits is enumerable); what it cannot recover is
        which chunks belong together. Bits = sum over positions of log2 C(2^w, distinct values),
        each capped at log2(1/fpr) per value when the filter is coarser than the chunk."""
        from math import lgamma, log
        hs = db.hashes_for(self.hasher.name)
        m = self.p["chunks"]
        w = 8 * self.hasher.nbytes // m
        total = 0.0
        for j in range(m):
            k = len({bytes(r) for r in hs[:, j * w // 8:(j + 1) * w // 8]})
            u = float(2 ** w)
            comb = (lgamma(u + 1) - lgamma(k + 1) - lgamma(u - k + 1)) / log(2)
            total += min(comb, _bloom_exposure_bits(k, self.p["fpr"]))
        return (total, f"{m} chunk positions of {w} bits: the set of chunk values per position "
                       f"(enumerable offline), not which chunks form one entry")
