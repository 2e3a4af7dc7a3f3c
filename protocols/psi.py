"""Server-learns PSI with associated data (Apple-style): ``psi-ad``, ``tpsi-ad``, ``psi-ad-lsh``.

Why: in this family the provider can learn *only* matches. The provider blinds every list
element with a secret scalar ``a`` and ships the blinded points as a cuckoo table (empty slots
hold random points, so the table reveals the list size only up to the load). Per image the
device builds a *voucher* the provider can open only if the image's hash is on the list:

    r  random scalar;  Q = r * H(x);  for each cuckoo hash function i, slot_i = h_i(x):
    S_i = r * T[slot_i];  ct_i = AES-256-GCM(K_i, payload), K_i = KDF(S_i || Q || i)

The provider computes ``a * Q`` once (one scalar multiplication) and tries each ``ct_i`` with
``KDF(a*Q || Q || i)``; since ``T[slot] = a * H(y)``, ``r * T[slot] = a * Q`` iff ``H(x) = H(y)``.
The device never learns the verdict. ``tpsi-ad`` adds Shamir t-of-n sharing of a per-account
inner key and synthetic vouchers; ``psi-ad-lsh`` runs psi-ad over hash chunks. The byte-level
formats, what each party learns and the dishonest-client analysis are in docs/psi.md.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto_group import (L, POINT_BYTES, Scalar, base_mul, hash_to_group,
                                              hash_many_bytes, mul_many_bytes)
from e2eebench.protocols.crypto_sharing import (SHARE_BYTES, Share, ShareGenerator, synthetic_share,
                                                random_field_element, robust_reconstruct)
from e2eebench.protocols.cuckoo import CuckooTable, candidate_slots_for
from e2eebench.protocols.errors import AuthenticationFailed, ConfigError, MalformedMessage, ReplayError
from e2eebench.protocols.framework import Param, Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase

H_DOMAIN = b"e2eebench/psi-ad/H/v1"
KDF_PERSON = b"e2ee-psi-kdf-v1"  # 15 bytes (blake2b personalisation is at most 16)
CHECK_PERSON = b"e2ee-psi-chk-v1"
CHECK_BYTES = 16
TAG_BYTES = 16
NONCE_BYTES = 12
BIND_BYTES = 32
DERIV_SIDE = 16
DERIV_BYTES = DERIV_SIDE * DERIV_SIDE
ZERO_NONCE = bytes(NONCE_BYTES)
REPORT_PLAIN = BIND_BYTES + DERIV_BYTES  # what a matched voucher reveals: binding + derivative


# --------------------------------------------------------------------------------------------
# helpers shared by the three schemes
# --------------------------------------------------------------------------------------------
def visual_derivative(image: Image.Image) -> bytes:
    """A 16x16 grayscale thumbnail: the low-resolution 'visual derivative' a report carries."""
    return image.convert("L").resize((DERIV_SIDE, DERIV_SIDE), Image.BOX).tobytes()


def binding(account: str, message_id: str) -> bytes:
    """32 bytes naming the account and message a voucher was made for (checked after opening)."""
    a, m = account.encode(), message_id.encode()
    return hashlib.sha256(b"e2eebench/psi-bind/v1" + struct.pack(">H", len(a)) + a + m).digest()


def slot_key(s: bytes, q: bytes, i: int) -> bytes:
    """K_i = BLAKE2b-256(S || Q || i): a random-oracle KDF (one call, ~1 us)."""
    return hashlib.blake2b(s + q + bytes([i]), digest_size=32, person=KDF_PERSON).digest()


def inner_key(secret: int, what: bytes) -> bytes:
    return hashlib.blake2b(secret.to_bytes(32, "little") + what, digest_size=32, person=b"e2ee-psi-inner").digest()


def _check(magic: bytes, body: bytes, ad: bytes) -> bytes:
    return hashlib.blake2b(magic + body + struct.pack(">H", len(ad)) + ad, digest_size=CHECK_BYTES,
                           person=CHECK_PERSON).digest()


@dataclass
class ProviderTable:
    """The provider's secret blinding key and the public table parameters."""

    alpha: Scalar
    n_hashes: int
    n_slots: int
    list_size: int
    frac_first: int  # per-mille of real entries placed by hash function 0 (public; see docs)


@dataclass
class DeviceTable:
    """What a device holds after loading the bundle: public table, public key a*G."""

    seed: bytes
    n_slots: int
    n_hashes: int
    public: bytes
    frac_first: int
    table: list[bytes]
    root: bytes

    def slots(self, element: bytes) -> list[int]:
        return candidate_slots_for(element, self.seed, self.n_slots, self.n_hashes)


def build_table(elements: list[bytes], rng: np.random.Generator, n_hashes: int, load: float,
                magic: bytes) -> tuple[ProviderTable, bytes]:
    """Blind the list, place it in a cuckoo table, fill empty slots, pack the bundle."""
    elements = sorted(set(elements))
    alpha = Scalar.random(rng)
    seed = rng.bytes(16)
    ct = CuckooTable.build(elements, n_hashes=n_hashes, load=load, seed=seed)
    blinded = mul_many_bytes(hash_many_bytes(elements, H_DOMAIN), alpha)
    cand = ct.candidates_many(elements) if elements else np.zeros((0, n_hashes), np.int64)
    table: list[bytes] = []
    first = 0
    for s, owner in enumerate(ct.slot_owner.tolist()):
        if owner >= 0:
            table.append(blinded[owner])
            first += int(cand[owner, 0] == s)
        else:  # a uniform random point of the subgroup, indistinguishable from a blinded one
            table.append(base_mul(Scalar.random(rng)).data)
    frac = round(1000 * first / len(elements)) if elements else 500
    public = base_mul(alpha).data
    fields = [wire.u32(n_hashes), wire.u32(ct.n_slots), ct.seed, public, wire.u32(frac), b"".join(table)]
    root = hashlib.sha256(b"".join(fields)).digest()
    bundle = wire.pack(magic, fields + [root])
    return ProviderTable(alpha, n_hashes, ct.n_slots, len(elements), frac), bundle


def load_table(bundle: bytes, magic: bytes, what: str) -> DeviceTable:
    f = wire.unpack(magic, bundle, 7, what)
    n_hashes, n_slots = wire.read_u32(f[0], "n_hashes"), wire.read_u32(f[1], "n_slots")
    if not 2 <= n_hashes <= 8 or n_slots < n_hashes:
        raise MalformedMessage(f"{what}: bad table shape ({n_hashes} hashes, {n_slots} slots)")
    if not 1 <= len(f[2]) <= 64 or len(f[3]) != POINT_BYTES:
        raise MalformedMessage(f"{what}: bad seed or public key length")
    frac = wire.read_u32(f[4], "frac")
    if frac > 1000:
        raise MalformedMessage(f"{what}: placement fraction {frac} > 1000")
    if len(f[5]) != n_slots * POINT_BYTES:
        raise MalformedMessage(f"{what}: table is {len(f[5])} bytes, expected {n_slots * POINT_BYTES}")
    if hashlib.sha256(b"".join(f[:6])).digest() != f[6]:
        raise AuthenticationFailed(f"{what}: table does not match its root digest")
    t = f[5]
    table = [t[i: i + POINT_BYTES] for i in range(0, len(t), POINT_BYTES)]
    return DeviceTable(f[2], n_slots, n_hashes, f[3], frac, table, f[6])


# -- vouchers ------------------------------------------------------------------------------------
def voucher_len(n_hashes: int, plain: int) -> int:
    return 4 + POINT_BYTES + n_hashes * (plain + TAG_BYTES) + CHECK_BYTES


def make_voucher(dt: DeviceTable, element: bytes, plaintext: bytes, ad: bytes, magic: bytes,
                 rng: np.random.Generator, hx: bytes | None = None) -> bytes:
    """Real voucher: Q = r*H(x), ct_i under KDF(r*T[h_i(x)] || Q || i), fixed order i = 0..k-1."""
    r = Scalar.random(rng)
    hpoint = hx if hx is not None else hash_to_group(element, H_DOMAIN).data
    slots = dt.slots(element)
    pts = mul_many_bytes([hpoint] + [dt.table[s] for s in slots], r)
    q = pts[0]
    cts = [AESGCM(slot_key(pts[1 + i], q, i)).encrypt(ZERO_NONCE, plaintext, magic)
           for i in range(dt.n_hashes)]
    body = q + b"".join(cts)
    return magic + body + _check(magic, body, ad)


def make_synthetic(dt: DeviceTable, plaintext: bytes, ad: bytes, magic: bytes,
                   rng: np.random.Generator) -> bytes:
    """Synthetic voucher: Q = r*G and one ct under KDF(r*(a*G) || Q || j): opens for the provider
    whatever the image, at a position j drawn like the table's real placements."""
    r = Scalar.random(rng)
    q = base_mul(r).data
    s = mul_many_bytes([dt.public], r)[0]
    j = 0 if rng.integers(0, 1000) < dt.frac_first else int(rng.integers(1, dt.n_hashes))
    clen = len(plaintext) + TAG_BYTES
    cts = [AESGCM(slot_key(s, q, i)).encrypt(ZERO_NONCE, plaintext, magic) if i == j else rng.bytes(clen)
           for i in range(dt.n_hashes)]
    body = q + b"".join(cts)
    return magic + body + _check(magic, body, ad)


class _Pending:
    """A view of a replay set that collects additions and commits them only on success."""

    def __init__(self, base: set[bytes]):
        self.base, self.new = base, set()

    def __contains__(self, q: bytes) -> bool:
        return q in self.base or q in self.new

    def add(self, q: bytes) -> None:
        self.new.add(q)

    def commit(self) -> None:
        self.base |= self.new


def open_voucher(pt: ProviderTable, voucher: bytes, ad: bytes, magic: bytes, plain: int,
                 seen: set[bytes]) -> tuple[int, bytes] | None:
    """(index, plaintext) if the voucher opens, None if not; typed errors on bad input.

    One scalar multiplication (libsodium validates Q inside it: canonical, not small order, in
    the prime-order subgroup) plus k KDF calls and at most k AES-GCM tag checks.
    """
    n = voucher_len(pt.n_hashes, plain)
    if not isinstance(voucher, (bytes, bytearray)) or len(voucher) != n:
        raise MalformedMessage(f"voucher must be {n} bytes, got {len(voucher)}")
    if voucher[:4] != magic:
        raise MalformedMessage("voucher has the wrong magic")
    body, chk = voucher[4:-CHECK_BYTES], voucher[-CHECK_BYTES:]
    q = body[:POINT_BYTES]
    if q in seen:
        raise ReplayError("voucher was already received once (same Q)")
    if _check(magic, body, ad) != chk:
        raise AuthenticationFailed("voucher checksum does not verify (garbled, or made for another account or message)")
    s = mul_many_bytes([q], pt.alpha)[0]  # MalformedMessage if Q is not a valid group element
    seen.add(q)
    clen = plain + TAG_BYTES
    for i in range(pt.n_hashes):
        c = body[POINT_BYTES + i * clen: POINT_BYTES + (i + 1) * clen]
        try:
            return i, AESGCM(slot_key(s, q, i)).decrypt(ZERO_NONCE, c, magic)
        except InvalidTag:
            continue
    return None


def _element(h: np.ndarray) -> bytes:
    return np.ascontiguousarray(h, dtype=np.uint8).tobytes()


TABLE_PARAMS = (
    Param("n_hashes", 2, "cuckoo hash functions = ciphertexts per voucher (device: 1 + n_hashes scalar mults)",
          (2, 3), int),
    Param("load", 0.45, "cuckoo table load (entries / slots); with 2 hash functions stay below 0.5", None, float),
)


class _PsiBase(Scheme):
    family = "psi"
    eu_category = "encryption"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    magic_bundle: bytes = b"PSB1"
    magic_voucher: bytes = b"PSV1"

    def __init__(self, hasher, threshold=None, **params):
        super().__init__(hasher, threshold, **params)
        load = self.p["load"]
        if not 0.05 <= load <= 0.9 or (self.p["n_hashes"] == 2 and load > 0.5):
            raise ConfigError(f"parameter 'load' must be in 0.05..0.9 (at most 0.5 with 2 hash functions), got {load}")

    def _elements(self, db: KnownHashDatabase) -> list[bytes]:
        return [_element(h) for h in db.hashes_for(self.hasher.name)]

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        pt, bundle = build_table(self._elements(db), ctx.rng, self.p["n_hashes"], self.p["load"],
                                 self.magic_bundle)
        return {"table": pt, "seen": set(), **self._provider_extra()}, bundle

    def _provider_extra(self) -> dict:
        return {}

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        dt = load_table(bundle, self.magic_bundle, f"{self.name} bundle")
        ctx.learn(DEVICE, "database", {"list_size_upper": dt.n_slots})
        return {"table": dt, "account": account}


# --------------------------------------------------------------------------------------------
@register
class PsiAd(_PsiBase):
    """psi-ad: one voucher per image; the provider opens it iff the hash is on the list."""

    name = "psi-ad"
    verdict_to = "provider"
    trust = "provider's list (not verifiable by the device beyond its root digest); device software"
    matching = "exact"
    description = ("Server-learns PSI with associated data (ed25519 subgroup via libsodium): blinded "
                   "cuckoo table on the device, one voucher per image, opens only on an exact match")
    params = TABLE_PARAMS
    PLAIN = REPORT_PLAIN

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        dt: DeviceTable = state["table"]
        x = _element(self.hasher.hash(image))
        plain = binding(ctx.account, ctx.message_id) + visual_derivative(image)
        ad = binding(ctx.account, ctx.message_id)
        return Prepared(make_voucher(dt, x, plain, ad, self.magic_voucher, ctx.rng))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return  # text-only message (or an omitted voucher: see docs/psi.md)
        bind = binding(ctx.account, ctx.message_id)
        res = open_voucher(state["table"], payload, bind, self.magic_voucher, self.PLAIN, state["seen"])
        if res is None:
            ctx.verdict(PROVIDER, False)
            return
        plain = res[1]
        if plain[:BIND_BYTES] != bind:
            raise AuthenticationFailed("opened voucher was made for another account or message")
        ctx.learn(PROVIDER, "report", {"message": ctx.message_id, "account": ctx.account,
                                       "derivative": plain[BIND_BYTES:].hex()})
        ctx.verdict(PROVIDER, True)


# --------------------------------------------------------------------------------------------
INNER_CT = NONCE_BYTES + REPORT_PLAIN + TAG_BYTES
TPSI_PLAIN = SHARE_BYTES + INNER_CT


@dataclass
class _Account:
    """The provider's view of one account in tpsi-ad: opened vouchers until the key is known."""

    opened: list[tuple[str, Share, bytes]] = field(default_factory=list)  # (message id, share, inner ct)
    key: bytes | None = None
    coeffs: list[int] | None = None
    attempts: int = 0


@register
class TPsiAd(_PsiBase):
    """tpsi-ad: psi-ad outer layer + per-account t-of-n inner layer + synthetic vouchers."""

    name = "tpsi-ad"
    verdict_to = "provider, after t matches"
    trust = ("provider's list; device software (it draws the synthetic vouchers); the threshold t "
             "is a promise kept by the device's sharing")
    matching = "exact"
    description = ("Threshold PSI-AD: each voucher carries a Shamir share of the account's inner key; "
                   "synthetic vouchers hide the match count; payloads readable at t matches")
    params = TABLE_PARAMS + (
        Param("t", 3, "matches an account needs before the provider can read anything (Apple: 30)", None, int),
        Param("synthetic_rate", 0.05, "probability that a device sends a synthetic voucher instead", None, float),
    )
    magic_bundle = b"TPB1"
    magic_voucher = b"TPV1"

    def __init__(self, hasher, threshold=None, **params):
        super().__init__(hasher, threshold, **params)
        if not 1 <= self.p["t"] <= 1000:
            raise ConfigError(f"parameter 't' must be in 1..1000, got {self.p['t']}")
        if not 0 <= self.p["synthetic_rate"] < 1:
            raise ConfigError(f"parameter 'synthetic_rate' must be in [0, 1), got {self.p['synthetic_rate']}")

    def _provider_extra(self) -> dict:
        return {"accounts": {}, "reconstruct_s": 0.0}

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        state = super().device_load(bundle, account, ctx)
        secret = random_field_element(ctx.rng)
        state["key"] = inner_key(secret, b"tpsi-inner")
        state["shares"] = ShareGenerator(secret, self.p["t"], ctx.rng)
        return state

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        dt: DeviceTable = state["table"]
        ad = binding(ctx.account, ctx.message_id)
        x = _element(self.hasher.hash(image))
        synthetic = ctx.rng.random() < self.p["synthetic_rate"]
        if synthetic:
            plain = synthetic_share(ctx.rng).encode() + ctx.rng.bytes(INNER_CT)
            return Prepared(make_synthetic(dt, plain, ad, self.magic_voucher, ctx.rng))
        inner_plain = ad + visual_derivative(image)
        nonce = ctx.rng.bytes(NONCE_BYTES)
        inner = nonce + AESGCM(state["key"]).encrypt(nonce, inner_plain, ad)
        share = state["shares"].share_for(ctx.rng.bytes(16))
        return Prepared(make_voucher(dt, x, share.encode() + inner, ad, self.magic_voucher, ctx.rng))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return
        ad = binding(ctx.account, ctx.message_id)
        res = open_voucher(state["table"], payload, ad, self.magic_voucher, TPSI_PLAIN, state["seen"])
        ctx.learn(PROVIDER, "outer_open", res is not None)
        if res is None:
            return
        plain = res[1]
        share = Share.decode(plain[:SHARE_BYTES])
        acct: _Account = state["accounts"].setdefault(ctx.account, _Account())
        rec = (ctx.message_id, share, plain[SHARE_BYTES:])
        if acct.key is not None:
            self._reveal(acct, [rec], ctx)
            return
        acct.opened.append(rec)
        if len(acct.opened) >= self.p["t"]:
            self._try_reconstruct(state, acct, ctx)

    def _try_reconstruct(self, state: dict, acct: _Account, ctx: MessageContext) -> None:
        """Berlekamp-Welch over every opened share; confirmed by decrypting an inner ciphertext."""
        import time
        t0 = time.process_time()
        acct.attempts += 1
        shares = [s for _, s, _ in acct.opened]

        def check(secret: int) -> bool:
            key = inner_key(secret, b"tpsi-inner")
            return any(_try_inner(key, mid, ctx.account, ct) is not None for mid, _, ct in acct.opened)

        res = robust_reconstruct(shares, self.p["t"], check)
        state["reconstruct_s"] += time.process_time() - t0
        if res is None:
            return
        acct.key = inner_key(res.secret, b"tpsi-inner")
        acct.coeffs = res.coefficients
        pending, acct.opened = acct.opened, []
        self._reveal(acct, pending, ctx)

    def _reveal(self, acct: _Account, recs: list, ctx: MessageContext) -> None:
        for mid, share, ct in recs:
            plain = None
            if _horner(acct.coeffs, share.x) == share.y:
                plain = _try_inner(acct.key, mid, ctx.account, ct)
            if plain is None:  # fake share or garbage inner layer: a synthetic voucher
                ctx.learn(PROVIDER, "synthetic", True, message_id=mid)
                continue
            ctx.learn(PROVIDER, "report", {"message": mid, "account": ctx.account,
                                           "derivative": plain[BIND_BYTES:].hex()}, message_id=mid)
            ctx.verdict(PROVIDER, True, message_id=mid)


def _horner(coeffs: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % L
    return acc


def _try_inner(key: bytes, mid: str, account: str, ct: bytes) -> bytes | None:
    ad = binding(account, mid)
    try:
        plain = AESGCM(key).decrypt(ct[:NONCE_BYTES], ct[NONCE_BYTES:], ad)
    except InvalidTag:
        return None
    return plain if plain[:BIND_BYTES] == ad else None


# --------------------------------------------------------------------------------------------
LSH_CHUNK_PLAIN = SHARE_BYTES + BIND_BYTES
LSH_INNER = NONCE_BYTES + REPORT_PLAIN + TAG_BYTES


@register
class PsiAdLsh(_PsiBase):
    """psi-ad-lsh: psi-ad over (chunk index, chunk bits); match at >= min_chunks chunk matches."""

    name = "psi-ad-lsh"
    verdict_to = "provider (also which chunks matched, for near misses)"
    trust = "provider's list; device software"
    matching = "chunked"
    description = ("psi-ad over hash chunks (multi-index): one chunk voucher per chunk, each carrying a "
                   "share of a per-image key; the report opens at min_chunks chunk matches")
    params = TABLE_PARAMS + (
        Param("chunk_bits", 16, "bits per chunk (the list holds one element per (chunk index, value))",
              (8, 16, 32), int),
        Param("min_chunks", 2, "chunk matches that make a match (k of a k-of-n sharing of the report key)",
              None, int),
    )
    magic_bundle = b"PLB1"
    magic_voucher = b"PLV1"

    def __init__(self, hasher, threshold=None, **params):
        super().__init__(hasher, threshold, **params)
        if hasher.bits % self.p["chunk_bits"]:
            raise ConfigError(f"parameter 'chunk_bits' must divide the hash length {hasher.bits}")
        self.n_chunks = hasher.bits // self.p["chunk_bits"]
        if self.n_chunks > 255:
            raise ConfigError("too many chunks (at most 255)")
        if not 1 <= self.p["min_chunks"] <= self.n_chunks:
            raise ConfigError(f"parameter 'min_chunks' must be in 1..{self.n_chunks}, got {self.p['min_chunks']}")

    def chunks(self, h: np.ndarray) -> list[bytes]:
        """Elements: chunk index (1 byte) || chunk bytes; the index keeps chunks of different
        positions apart in the list."""
        b = _element(h)
        w = self.p["chunk_bits"] // 8
        return [bytes([i]) + b[i * w:(i + 1) * w] for i in range(self.n_chunks)]

    def _elements(self, db: KnownHashDatabase) -> list[bytes]:
        return [c for h in db.hashes_for(self.hasher.name) for c in self.chunks(h)]

    def _provider_extra(self) -> dict:
        return {"chunk_matches": 0}

    def plaintext_match(self, db: KnownHashDatabase, h: np.ndarray) -> bool:
        """The reference this scheme computes: at least min_chunks of the image's chunks each equal
        the same-position chunk of *some* list entry (not necessarily the same entry)."""
        listed = {c for y in db.hashes_for(self.hasher.name) for c in self.chunks(y)}
        return sum(c in listed for c in self.chunks(h)) >= self.p["min_chunks"]

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        dt: DeviceTable = state["table"]
        ad = binding(ctx.account, ctx.message_id)
        secret = random_field_element(ctx.rng)
        gen = ShareGenerator(secret, self.p["min_chunks"], ctx.rng)
        nonce = ctx.rng.bytes(NONCE_BYTES)
        inner = nonce + AESGCM(inner_key(secret, b"lsh-image")).encrypt(nonce, ad + visual_derivative(image), ad)
        vs = [make_voucher(dt, c, gen.share_for(bytes([i])).encode() + ad, ad, self.magic_voucher, ctx.rng)
              for i, c in enumerate(self.chunks(self.hasher.hash(image)))]
        return Prepared(wire.pack(b"PLS1", [b"".join(vs), inner]))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return
        allv, inner = wire.unpack(b"PLS1", payload, 2, "psi-ad-lsh payload")
        vl = voucher_len(state["table"].n_hashes, LSH_CHUNK_PLAIN)
        if len(allv) != vl * self.n_chunks or len(inner) != LSH_INNER:
            raise MalformedMessage(f"psi-ad-lsh payload: expected {self.n_chunks} vouchers of {vl} bytes "
                                   f"and a {LSH_INNER}-byte inner ciphertext")
        ad = binding(ctx.account, ctx.message_id)
        matched: list[int] = []
        shares: list[Share] = []
        seen = _Pending(state["seen"])  # replay state changes only once every chunk voucher checked
        for i in range(self.n_chunks):
            res = open_voucher(state["table"], allv[i * vl:(i + 1) * vl], ad, self.magic_voucher,
                               LSH_CHUNK_PLAIN, seen)
            if res is None:
                continue
            plain = res[1]
            if plain[SHARE_BYTES:] != ad:
                raise AuthenticationFailed("opened chunk voucher was made for another account or message")
            matched.append(i)
            shares.append(Share.decode(plain[:SHARE_BYTES]))
        seen.commit()
        state["chunk_matches"] += len(matched)
        for i in matched:  # declared leak: chunk i equals one of the list's values at index i
            ctx.learn(PROVIDER, "intermediate", bytes([i, 0]))
        plain = None
        if len(shares) >= self.p["min_chunks"]:
            def check(secret: int) -> bool:
                return _try_inner(inner_key(secret, b"lsh-image"), ctx.message_id, ctx.account, inner) is not None
            res2 = robust_reconstruct(shares, self.p["min_chunks"], check)
            if res2 is not None:
                plain = _try_inner(inner_key(res2.secret, b"lsh-image"), ctx.message_id, ctx.account, inner)
        if plain is None:
            ctx.verdict(PROVIDER, False)
            return
        ctx.learn(PROVIDER, "report", {"message": ctx.message_id, "account": ctx.account,
                                       "chunks": matched, "derivative": plain[BIND_BYTES:].hex()})
        ctx.verdict(PROVIDER, True)


__all__ = ["PsiAd", "TPsiAd", "PsiAdLsh", "build_table", "load_table", "make_voucher", "make_synthetic",
           "open_voucher", "voucher_len", "visual_derivative", "binding", "ProviderTable", "DeviceTable"]
