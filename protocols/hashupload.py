"""Device-related schemes with matching at the provider ("hash-upload" family).

``hash-upload`` ("on-device full hashing, matching at the server"): the device hashes each
image and seals the hash to the provider's public key (X25519 + HKDF-SHA256 + AES-256-GCM,
HPKE-style base mode, bound to account and message id). The provider opens it, learns the
hash, and matches it against the list with the multi-index-hashing index (exact: the same
set as a linear scan). The device holds no list: no offline membership oracle, no list
exposure -- but the provider sees every benign image's hash.

``partial-hash`` ("on-device partial hashing, the rest at the server"): the device runs PDQ
up to the 16x16 DCT block (the 256 real values before the median step), encodes them
(float32 by default: lossless) and seals them; the provider completes the hash by thresholding at the median exactly as PDQ
does, then matches. The provider now sees more than the hash: magnitudes, not only signs,
which is what the inversion attack in ``evaluation/leakage/inversion.py`` measures.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import Hasher
from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal, sha256
from e2eebench.protocols.errors import ConfigError, MalformedMessage, ReplayError
from e2eebench.protocols.framework import Param, Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase
from e2eebench.server.index import closest_within, get_index

HASH_INFO = b"e2eebench hash-upload v1"
PARTIAL_INFO = b"e2eebench partial-hash v1"
QUANT = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def complete_hash(features: np.ndarray) -> np.ndarray:
    """PDQ's last step: bit i = feature i > median of all features, packed MSB first.

    The 256 values are PDQ's DCT block in output-bit order (as ``pdqhash.compute_float``
    returns them), so the packed bits equal ``pdqhash.compute``'s bit for bit.
    """
    f = np.asarray(features, np.float64)
    return np.packbits((f > np.median(f)).astype(np.uint8))


class _ProviderMatchBase(Scheme):
    """Shared setup: the provider's key pair and MIH index; the bundle is only its public key."""

    family = "hash-upload"
    eu_category = "device"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    verdict_to = "provider"
    leakage = {PROVIDER: ("hash",)}
    leakage_text = {PROVIDER: "every image's hash (partial-hash: the DCT values before the median)"}
    matching = "fuzzy"
    magic: bytes

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        keys = KeyPair.generate(ctx.random_bytes)
        hs = db.hashes_for(self.hasher.name)
        index = get_index("mih", hs, threshold=self.threshold) if len(hs) else None
        fields = [self.hasher.name.encode(), keys.public_bytes]
        body = wire.pack(self.magic, fields)
        return {"keys": keys, "index": index, "ids": db.ids}, wire.pack(self.magic, fields + [sha256(body)])

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        name, key, digest = wire.unpack(self.magic, bundle, 3, f"{self.name} bundle")
        if sha256(wire.pack(self.magic, [name, key])) != digest:
            from e2eebench.protocols.errors import AuthenticationFailed
            raise AuthenticationFailed(f"{self.name} bundle: contents do not match its digest")
        if name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage(f"bundle is for hasher {name!r}, device uses {self.hasher.name}")
        if len(key) != 32:
            raise MalformedMessage("bundle public key must be 32 bytes")
        return {"provider_key": key}

    def _not_replayed(self, state: dict, ctx: MessageContext) -> None:
        """A sealed payload is accepted once per (account, message): a re-sent one is a replay."""
        key = (ctx.account, ctx.message_id)
        seen = state.setdefault("seen", set())
        if key in seen:
            raise ReplayError(f"{self.name}: payload for this message was already received")
        seen.add(key)

    def _match(self, state: dict, h: np.ndarray, ctx: MessageContext) -> None:
        ctx.learn(PROVIDER, "hash", h.tobytes())
        hit = closest_within(state["index"], h, self.threshold)
        if hit is not None:
            ctx.learn(PROVIDER, "report", {"entry": state["ids"][hit[0]], "distance": hit[1]})
        ctx.verdict(PROVIDER, hit is not None)

    def device_db_exposure(self, db: KnownHashDatabase) -> tuple[float, str]:
        return 0.0, "bundle holds only the provider's public key; the list stays at the provider"


@register
class HashUpload(_ProviderMatchBase):
    name = "hash-upload"
    magic = b"HUP1"
    trust = "provider (sees every image's hash; trusted not to invert or link it)"
    description = "Device seals its PDQ hash to the provider (X25519+HKDF+AES-GCM); provider matches with MIH"

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        h = self.hasher.hash(image)
        return Prepared(seal(state["provider_key"], h.tobytes(), info=HASH_INFO, ad=ctx.binding(),
                             random_bytes=ctx.random_bytes))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:  # text-only message (or a stripped payload: the provider cannot tell)
            return
        raw = open_sealed(state["keys"], payload, info=HASH_INFO, ad=ctx.binding())
        ctx.opened(PROVIDER, "sealed hash", raw)
        if len(raw) != self.hasher.nbytes:
            raise MalformedMessage(f"sealed hash is {len(raw)} bytes, expected {self.hasher.nbytes}")
        self._not_replayed(state, ctx)
        self._match(state, np.frombuffer(raw, np.uint8).copy(), ctx)


@register
class PartialHash(_ProviderMatchBase):
    name = "partial-hash"
    magic = b"PHS1"
    trust = "provider (sees every image's DCT block; trusted not to invert or link it)"
    description = ("Device sends PDQ's 256 DCT values before the median step, sealed; provider "
                   "thresholds at the median and matches with MIH")
    # float32 is lossless (PDQ computes in single precision), so the completed hash equals
    # PDQ's bit for bit; float16 halves the bytes but flipped one bit in 1 of 205 quick-run images
    params = (Param("quant", "float32", "wire encoding of the 256 values: float32 (1 KiB, lossless) or "
                    "float16 (512 B, may flip a bit next to the median)", tuple(QUANT), str),)

    def __init__(self, hasher: Hasher, threshold: int | None = None, **params: Any):
        super().__init__(hasher, threshold, **params)
        if hasher.name != "pdq":
            raise ConfigError(f"partial-hash completes PDQ's median step; hasher {hasher.name!r} is not supported")

    def encode_features(self, f: np.ndarray) -> bytes:
        return np.asarray(f).astype(QUANT[self.p["quant"]]).tobytes()

    def decode_features(self, raw: bytes) -> np.ndarray:
        dt = QUANT[self.p["quant"]]
        if len(raw) != self.hasher.bits * dt.itemsize:
            raise MalformedMessage(f"sealed intermediate is {len(raw)} bytes, expected {self.hasher.bits * dt.itemsize}")
        f = np.frombuffer(raw, dt).astype(np.float64)
        if not np.isfinite(f).all():
            raise MalformedMessage("sealed intermediate holds non-finite values")
        return f

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        f = self.hasher.features(image)
        return Prepared(seal(state["provider_key"], self.encode_features(f), info=PARTIAL_INFO,
                             ad=ctx.binding(), random_bytes=ctx.random_bytes))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:  # text-only message (or a stripped payload: the provider cannot tell)
            return
        raw = open_sealed(state["keys"], payload, info=PARTIAL_INFO, ad=ctx.binding())
        ctx.opened(PROVIDER, "sealed intermediate", raw)
        f = self.decode_features(raw)
        self._not_replayed(state, ctx)
        ctx.learn(PROVIDER, "intermediate", raw)
        self._match(state, complete_hash(f), ctx)
