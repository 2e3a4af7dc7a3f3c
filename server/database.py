"""The known-hash list a hotline would supply, with a version and an auditable root digest.

A device (or an auditor) recomputes :meth:`KnownHashDatabase.root_digest` from what it
holds and compares it with the published one, so a provider cannot serve a targeted
list to one user unnoticed (the transparency criterion). Padding with synthetic hashes
is allowed for cost measurements only and is counted in ``synthetic`` so every
measurement taken on a padded list can say so.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from e2eebench.clientside.hashing import Hasher
from e2eebench.protocols.errors import ConfigError, InputError


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """SHA-256 Merkle root with domain-separated leaves (0x00) and nodes (0x01)."""
    level = [hashlib.sha256(b"\x00" + x).digest() for x in leaves] or [hashlib.sha256(b"").digest()]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
                 for i in range(0, len(level), 2)]
    return level[0]


def published_root(list_root: bytes, params: Sequence[tuple[str, bytes]]) -> bytes:
    """The digest a provider publishes for a device bundle: the list's Merkle root together with
    every parameter that decides a verdict (hasher, threshold, report key, ...). An auditor who
    compares it sees a changed threshold or a swapped report key, not just a changed list."""
    h = hashlib.sha256(b"e2eebench bundle root v1\x00" + list_root)
    for name, value in sorted(params):
        n = name.encode()
        h.update(len(n).to_bytes(2, "big") + n + len(value).to_bytes(4, "big") + bytes(value))
    return h.digest()


@dataclass
class KnownHashDatabase:
    ids: list[str]
    hashes: dict[str, np.ndarray]
    features: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = 1
    synthetic: int = 0

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name, h in self.hashes.items():
            if h.dtype != np.uint8 or h.ndim != 2 or len(h) != n:
                raise InputError(f"hashes for {name} must be uint8 of shape ({n}, bytes), got {h.shape}")
        if len(set(self.ids)) != n:
            raise InputError("database ids are not unique")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_images(cls, items: Iterable, hashers: Sequence[Hasher], version: int = 1,
                    with_features: bool = True) -> "KnownHashDatabase":
        items = list(items)
        hashes = {h.name: h.hash_many(it.image for it in items) for h in hashers}
        feats: dict[str, np.ndarray] = {}
        if with_features:
            for h in hashers:
                if h.has_features:
                    feats[h.name] = np.stack([h.features(it.image) for it in items])
        return cls([it.id for it in items], hashes, feats, version)

    def hashes_for(self, hasher: str) -> np.ndarray:
        try:
            return self.hashes[hasher]
        except KeyError:
            raise ConfigError(f"the known list holds no {hasher} hashes (has: {', '.join(self.hashes)})") from None

    def root_digest(self) -> bytes:
        leaves = []
        for i, ident in enumerate(self.ids):
            leaf = ident.encode() + b"".join(self.hashes[k][i].tobytes() for k in sorted(self.hashes))
            leaves.append(leaf)
        return merkle_root(sorted(leaves))

    def padded(self, total: int, seed: int = 0) -> "KnownHashDatabase":
        """A copy padded with synthetic entries up to ``total`` (for cost measurements only).

        Synthetic hashes are uniform random bits (a 256-bit one lies ~128 bits from any real
        image, so it never matches at a usual threshold); synthetic real-valued features are
        Gaussian with the real features' mean and spread. One vectorised draw per hasher, so
        10^6 entries take well under a second."""
        extra = total - len(self)
        if extra <= 0:
            return self
        rng = np.random.default_rng(seed)
        hashes = {k: np.concatenate([v, rng.integers(0, 256, (extra, v.shape[1]), dtype=np.uint8)])
                  for k, v in self.hashes.items()}
        feats = {}
        for k, f in self.features.items():
            mu, sd = (float(f.mean()), float(f.std()) or 1.0) if f.size else (0.0, 1.0)
            synth = (rng.standard_normal((extra, f.shape[1]), dtype=np.float32) * sd + mu).astype(f.dtype)
            feats[k] = np.concatenate([f, synth])
        start = self.synthetic
        ids = self.ids + [f"synthetic-{i}" for i in range(start, start + extra)]
        return KnownHashDatabase(ids, hashes, feats, self.version, self.synthetic + extra)
