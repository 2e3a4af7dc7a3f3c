"""Server-learns PSI with associated data (Apple-style): ``psi-ad``, ``tpsi-ad``, ``psi-ad-lsh``.

Why: in this family the provider can learn *only* matches. The provider blinds every list
element with a secret scalar ``a`` (public ``L = a*G``) and ships the blinded points as a cuckoo
table (empty slots hold random points, so the table reveals the list size only up to the load).
Per image the device builds a *voucher* the provider can open only if the image's hash is on
the list. With the paper's two-scalar random self-reduction (``blinding="two-scalar"``):

    b, c random;  Q = b*H(x) + c*G;  for each cuckoo hash function i, w_i = h_i(x):
    S_i = b*T[w_i] + c*L;  chk_i || pad_i = KDF(S_i || Q || magic || i);  ct_i = chk_i || rkey xor pad_i;
    rct = AES-GCM(BLAKE2b-256(rkey || Q), payload, ad = bind(account, message) || magic || Q || ct_0 .. ct_{k-1})

The provider computes ``a * Q`` once (one scalar multiplication) and compares each ``chk_i``
with ``KDF(a*Q || Q || magic || i)``: ``S_i = a*Q`` iff ``T[w_i] = a*H(x)``; otherwise ``(Q, S_i)`` is a uniform
pair whatever the table holds. The device never learns the verdict. ``tpsi-ad`` adds a per-account
t-of-n inner layer keyed to distinct images, synthetic vouchers and a detectable hash function;
``psi-ad-lsh`` runs psi-ad over hash chunks. Byte-level formats, what each party learns, every
difference from the paper and the dishonest-client analysis are in docs/psi.md.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto_group import (L, POINT_BYTES, Point, RandomBytes, RandomSource, Scalar, add_bytes,
                                              as_random_bytes, base_mul, base_mul_bytes, hash_many_bytes,
                                              hash_to_group_bytes, mul_bytes, mul_many_bytes, random_scalar_bytes)
from e2eebench.protocols.crypto_sharing import (DHF_BYTES, PRF_KEY_BYTES, SHARE_BYTES, DetectableHash,
                                                DhfDetector, Share, ShareGenerator, dhf_column, dhf_decode,
                                                dhf_encode, dhf_random, evaluate_poly, interpolate_at,
                                                interpolate_coeffs, prf_bytes,
                                                random_field_element, robust_reconstruct, share_x_prf)
from e2eebench.protocols.cuckoo import CuckooTable, slot_function
from e2eebench.protocols.errors import AuthenticationFailed, ConfigError, MalformedMessage, ReplayError
from e2eebench.protocols.framework import Param, Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase

H_DOMAIN = b"e2eebench/psi-ad/H/v1"
KDF_PERSON = b"e2ee-psi-kdf-v3"  # 15 bytes; hashlib zero-pads a personalisation to 16
AEAD_PERSON = b"e2ee-psi-aead-v1"  # 16 bytes
TAG_BYTES = 16
NONCE_BYTES = 12
RKEY_BYTES = 32
KEY_CT = TAG_BYTES + RKEY_BYTES  # ct_i: key check (16) || voucher key xor pad (32)
BIND_BYTES = 32
DERIV_SIDE = 16
DERIV_BYTES = DERIV_SIDE * DERIV_SIDE
ZERO_NONCE = bytes(NONCE_BYTES)
REPORT_PLAIN = BIND_BYTES + DERIV_BYTES  # what a matched voucher reveals: binding + derivative
BLINDINGS = ("two-scalar", "one-scalar")


# --------------------------------------------------------------------------------------------
# helpers shared by the three schemes
# --------------------------------------------------------------------------------------------
def visual_derivative(image: Image.Image) -> bytes:
    """A 16x16 grayscale thumbnail: the low-resolution 'visual derivative' a report carries."""
    return image.convert("L").resize((DERIV_SIDE, DERIV_SIDE), Image.BOX).tobytes()


def binding(account: str, message_id: str) -> bytes:
    """32 bytes naming the account and message a voucher was made for (AEAD associated data)."""
    a, m = account.encode(), message_id.encode()
    return hashlib.sha256(b"e2eebench/psi-bind/v1" + struct.pack(">H", len(a)) + a + m).digest()


def slot_pad(s: bytes, q: bytes, magic: bytes, i: int) -> bytes:
    """(chk_i || pad_i) = BLAKE2b-384(S || Q || magic || i): one random-oracle KDF call per slot
    gives both the 16-byte key check and the 32-byte pad that wraps the voucher key."""
    return hashlib.blake2b(s + q + magic + bytes([i]), digest_size=KEY_CT, person=KDF_PERSON).digest()


def payload_key(rkey: bytes, q: bytes) -> bytes:
    """The AES-GCM key: BLAKE2b-256(rkey || Q), never rkey itself, so that flipping bits of a
    wrapped key (which flips the same bits of the unwrapped rkey) gives an unrelated AES key,
    not one with a chosen XOR difference (related-key setting)."""
    return hashlib.blake2b(rkey + q, digest_size=32, person=AEAD_PERSON).digest()


def _xor32(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(RKEY_BYTES, "little")


STREAM_PERSON = b"e2ee-psi-rand-v1"  # 16 bytes
# bit generators whose random_raw yields full 64-bit words (MT19937's yields 32-bit values)
_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64)


def _stream_key(rng: RandomSource) -> bytes:
    """32 key bytes: four raw words of a 64-bit bit generator (~1 us; ``Generator.bytes`` costs
    ~13 us, it goes through ``integers``), else ``as_random_bytes`` (None: the OS CSPRNG)."""
    if isinstance(rng, np.random.Generator) and isinstance(rng.bit_generator, _RAW64):
        return rng.bit_generator.random_raw(4).tobytes()
    return as_random_bytes(rng)(32)


def secret_stream(rng: RandomSource) -> RandomBytes:
    """Secret bytes for a message: one 32-byte key from ``rng`` (``None``: the OS CSPRNG, for
    deployment) expanded by keyed BLAKE2b-512 in counter mode (block j = BLAKE2b-512(u64le j,
    key, person)). Reproducible by seed, yet an output (rkey, filler, a share) reveals neither
    the key nor the generator's words, as raw PCG64 output would. A callable is taken to be
    such a stream already and returned as is."""
    if callable(rng) and not isinstance(rng, np.random.Generator):
        return rng
    base = hashlib.blake2b(digest_size=64, key=_stream_key(rng), person=STREAM_PERSON)
    counter = 0
    buf = b""

    def draw(n: int) -> bytes:
        nonlocal counter, buf
        while len(buf) < n:
            h = base.copy()
            h.update(counter.to_bytes(8, "little"))
            buf += h.digest()
            counter += 1
        out, buf = buf[:n], buf[n:]
        return out
    return draw


def _scalars(raw: bytes, draw: Callable[[int], bytes]) -> list[bytes]:
    """Scalars from 64-byte blocks of ``raw`` (each reduced mod L, bias < 2^-259); a zero is redrawn."""
    out = []
    for j in range(0, len(raw), 64):
        s = (int.from_bytes(raw[j: j + 64], "little") % L).to_bytes(32, "little")
        out.append(s if s != _ZERO_SCALAR else random_scalar_bytes(draw))
    return out


_ZERO_SCALAR = bytes(32)


def inner_key(secret: int, what: bytes) -> bytes:
    return hashlib.blake2b(secret.to_bytes(32, "little") + what, digest_size=32, person=b"e2ee-psi-inner").digest()


@dataclass
class ProviderTable:
    """The provider's secret blinding key and the public table parameters."""

    alpha: Scalar
    n_hashes: int
    n_slots: int
    list_size: int
    placed: tuple[int, ...]  # per-mille of real entries placed by each hash function (public; see docs)


@dataclass
class DeviceTable:
    """What a device holds after loading the bundle: public table, public key L = a*G."""

    seed: bytes
    n_slots: int
    n_hashes: int
    public: bytes
    placed: tuple[int, ...]
    table: list[bytes]
    root: bytes

    _slots: Callable[[bytes], list[int]] | None = field(default=None, repr=False, compare=False)

    def slots(self, element: bytes) -> list[int]:
        if self._slots is None:
            self._slots = slot_function(self.seed, self.n_slots, self.n_hashes)
        return self._slots(element)


def _placed_fractions(ct: CuckooTable, cand: np.ndarray, n: int, k: int) -> tuple[int, ...]:
    if n == 0:
        return tuple([1000 // k + (1 if i < 1000 % k else 0) for i in range(k)])
    owner = ct.slot_owner
    slots = np.flatnonzero(owner >= 0)
    by = np.argmax(cand[owner[slots]] == slots[:, None], axis=1)
    counts = np.bincount(by, minlength=k)
    per = [int(round(1000 * c / n)) for c in counts]
    per[int(np.argmax(per))] += 1000 - sum(per)  # sums to exactly 1000
    return tuple(per)


def build_table(elements: list[bytes], rng: RandomSource, n_hashes: int, load: float,
                magic: bytes) -> tuple[ProviderTable, bytes]:
    """Blind the list, place it in a cuckoo table, fill empty slots, pack the bundle.

    Cost per element: one hash-to-group and one variable-base ristretto255 multiplication
    (libsodium, one list comprehension each); per empty slot one fixed-base multiplication.
    """
    elements = sorted(set(elements))
    draw = secret_stream(rng)  # the published seed and dummies must not reveal the generator behind alpha
    alpha = Scalar.random(draw)
    seed = draw(16)
    ct = CuckooTable.build(elements, n_hashes=n_hashes, load=load, seed=seed)
    blinded = mul_many_bytes(hash_many_bytes(elements, H_DOMAIN), alpha)
    cand = ct.candidates_many(elements) if elements else np.zeros((0, n_hashes), np.int64)
    owner = ct.slot_owner.tolist()
    n_empty = owner.count(-1)
    # a uniform random group element per empty slot, indistinguishable from a blinded one
    base = base_mul_bytes
    dummies = iter([base(random_scalar_bytes(draw)) for _ in range(n_empty)])
    table = [blinded[o] if o >= 0 else next(dummies) for o in owner]
    placed = _placed_fractions(ct, cand, len(elements), n_hashes)
    public = base_mul(alpha).data
    fields = [wire.u32(n_hashes), wire.u32(ct.n_slots), ct.seed, public,
              b"".join(struct.pack(">H", f) for f in placed), b"".join(table)]
    root = hashlib.sha256(b"".join(fields)).digest()
    bundle = wire.pack(magic, fields + [root])
    return ProviderTable(alpha, n_hashes, ct.n_slots, len(elements), placed), bundle


def load_table(bundle: bytes, magic: bytes, what: str) -> DeviceTable:
    f = wire.unpack(magic, bundle, 7, what)
    n_hashes, n_slots = wire.read_u32(f[0], "n_hashes"), wire.read_u32(f[1], "n_slots")
    if not 2 <= n_hashes <= 8 or n_slots < n_hashes:
        raise MalformedMessage(f"{what}: bad table shape ({n_hashes} hashes, {n_slots} slots)")
    if not 1 <= len(f[2]) <= 64 or len(f[3]) != POINT_BYTES:
        raise MalformedMessage(f"{what}: bad seed or public key length")
    if len(f[4]) != 2 * n_hashes:
        raise MalformedMessage(f"{what}: placement fractions must be {n_hashes} u16 values")
    placed = struct.unpack(f">{n_hashes}H", f[4])
    if sum(placed) != 1000:
        raise MalformedMessage(f"{what}: placement fractions sum to {sum(placed)}, not 1000")
    if len(f[5]) != n_slots * POINT_BYTES:
        raise MalformedMessage(f"{what}: table is {len(f[5])} bytes, expected {n_slots * POINT_BYTES}")
    if hashlib.sha256(b"".join(f[:6])).digest() != f[6]:
        raise AuthenticationFailed(f"{what}: table does not match its root digest")
    Point.decode(f[3])  # L: MalformedMessage unless a canonical non-identity element
    t = f[5]
    table = [t[i: i + POINT_BYTES] for i in range(0, len(t), POINT_BYTES)]
    return DeviceTable(f[2], n_slots, n_hashes, f[3], placed, table, f[6])


# -- vouchers ------------------------------------------------------------------------------------
def voucher_len(n_hashes: int, plain: int) -> int:
    """magic (4) | Q (32) | k key ciphertexts (48 each) | payload ciphertext (plain + 16)."""
    return 4 + POINT_BYTES + n_hashes * KEY_CT + plain + TAG_BYTES


def device_mults(n_hashes: int, blinding: str) -> dict[str, int]:
    """Group operations per real voucher (besides one hash-to-group): counted, not estimated."""
    if blinding == "one-scalar":  # Q = r*H(x), S_i = r*T[w_i]
        return {"variable_base": 1 + n_hashes, "fixed_base": 0, "additions": 0}
    # Q = b*H(x) + c*G; c*L once; S_i = b*T[w_i] + c*L
    return {"variable_base": 2 + n_hashes, "fixed_base": 1, "additions": 1 + n_hashes}


def _seal(q: bytes, pads: list[bytes | None], rkey: bytes, filler: bytes, plaintext: bytes, ad: bytes,
          magic: bytes) -> bytes:
    """The voucher: magic | Q | k key ciphertexts | payload ciphertext, whose associated data
    covers the binding and every byte before it. ct_i = chk_i || rkey xor pad_i from
    ``slot_pad``; where a pad is None (a synthetic voucher's other positions) 48 bytes of
    ``filler`` stand in, as random as a real ct_i to anyone without S_i."""
    cts = []
    for i, d in enumerate(pads):
        cts.append(d[:TAG_BYTES] + _xor32(rkey, d[TAG_BYTES:]) if d is not None
                   else filler[i * KEY_CT:(i + 1) * KEY_CT])
    head = magic + q + b"".join(cts)
    return head + AESGCM(payload_key(rkey, q)).encrypt(ZERO_NONCE, plaintext, ad + head)


def make_voucher(dt: DeviceTable, element: bytes, plaintext: bytes, ad: bytes, magic: bytes,
                 rng: RandomSource, hx: bytes | None = None, blinding: str = "two-scalar") -> bytes:
    """Real voucher for ``element``: see the module docstring; ciphertexts in the fixed order
    of the hash functions, so the voucher does not say which slot could open it.

    The scalars and the voucher key are successive bytes of :func:`secret_stream` (``rng`` a
    Generator, None for the OS CSPRNG, or a stream already made for the message)."""
    if blinding not in BLINDINGS:
        raise ConfigError(f"blinding must be one of {BLINDINGS}, got {blinding!r}")
    hpoint = hx if hx is not None else hash_to_group_bytes(element, H_DOMAIN)
    slots = dt.slots(element)
    draw = secret_stream(rng)
    n_sc = 1 if blinding == "one-scalar" else 2
    raw = draw(64 * n_sc + RKEY_BYTES)
    scalars, rkey = _scalars(raw[:64 * n_sc], draw), raw[64 * n_sc:]
    # Table entries are decoded only here, inside libsodium's multiplication (decoding the whole
    # bundle at load would cost ~5 us per slot); a bad entry fails there and is reported as
    # MalformedMessage. L is decoded at load. Honest inputs cannot fail (scalars are nonzero).
    try:
        q, ss = _blind(hpoint, slots, dt.table, dt.public, scalars)
    except RuntimeError as exc:
        raise MalformedMessage("bundle table entry at this element's slots is not a valid group element") from exc
    return _seal(q, [slot_pad(si, q, magic, i) for i, si in enumerate(ss)], rkey, b"", plaintext, ad, magic)


def _blind(hpoint: bytes, slots: list[int], table: list[bytes], public: bytes,
           scalars: list[bytes]) -> tuple[bytes, list[bytes]]:
    """(Q, [S_0 .. S_{k-1}]) for a real voucher: one scalar r (Q = r*H(x), S_i = r*T[w_i]) or
    two, b and c (Q = b*H(x) + c*G, S_i = b*T[w_i] + c*L)."""
    mul = mul_bytes
    if len(scalars) == 1:
        r = scalars[0]
        return mul(r, hpoint), [mul(r, table[w]) for w in slots]
    b, c = scalars
    add = add_bytes
    q = add(mul(b, hpoint), base_mul_bytes(c))
    cl = mul(c, public)
    return q, [add(mul(b, table[w]), cl) for w in slots]


def make_synthetic(dt: DeviceTable, plaintext: bytes, ad: bytes, magic: bytes,
                   rng: RandomSource) -> bytes:
    """Synthetic voucher: Q = c*G, S = c*L, one key ciphertext at a position j drawn like the
    table's real placements (the others random bytes): the provider's a*Q = S, so it opens
    whatever the image. c, rkey, the filler and j all come from :func:`secret_stream`."""
    draw = secret_stream(rng)
    raw = draw(64 + RKEY_BYTES + dt.n_hashes * KEY_CT + 8)
    c, rkey = _scalars(raw[:64], draw)[0], raw[64:64 + RKEY_BYTES]
    filler, u = raw[64 + RKEY_BYTES:-8], int.from_bytes(raw[-8:], "little") % 1000  # bias < 2^-54
    q = base_mul_bytes(c)
    s = mul_bytes(c, dt.public)
    j = int(np.searchsorted(np.cumsum(dt.placed), u, side="right"))
    pads: list[bytes | None] = [slot_pad(s, q, magic, j) if i == j else None for i in range(dt.n_hashes)]
    return _seal(q, pads, rkey, filler, plaintext, ad, magic)


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

    One scalar multiplication (libsodium decodes Q inside it and fails unless Q is a canonical
    ristretto255 encoding of a non-identity element), k KDF calls with a 16-byte key check
    each, and one AES-GCM decryption if a check passes. A voucher whose key opens but whose
    payload fails its AEAD check (any byte altered: the associated data covers the binding, Q
    and every key ciphertext; or made for another account or message) is
    ``AuthenticationFailed``; a non-matching voucher cannot be checked by anyone and is simply
    a non-match.
    """
    n = voucher_len(pt.n_hashes, plain)
    if not isinstance(voucher, (bytes, bytearray)) or len(voucher) != n:
        raise MalformedMessage(f"voucher must be {n} bytes, got {len(voucher)}")
    voucher = bytes(voucher)
    if voucher[:4] != magic:
        raise MalformedMessage("voucher has the wrong magic")
    q = voucher[4:4 + POINT_BYTES]
    if q in seen:
        raise ReplayError("voucher was already received once (same Q)")
    try:  # libsodium decodes Q inside the multiplication: RuntimeError unless a valid element
        s = mul_bytes(pt.alpha.data, q)
    except RuntimeError as exc:
        raise MalformedMessage("voucher Q is not a valid group element") from exc
    seen.add(q)
    off = 4 + POINT_BYTES
    for i in range(pt.n_hashes):
        c = voucher[off + i * KEY_CT: off + (i + 1) * KEY_CT]
        d = slot_pad(s, q, magic, i)
        if not hmac.compare_digest(d[:TAG_BYTES], c[:TAG_BYTES]):
            continue
        rkey = _xor32(c[TAG_BYTES:], d[TAG_BYTES:])
        body = off + pt.n_hashes * KEY_CT
        try:
            return i, AESGCM(payload_key(rkey, q)).decrypt(ZERO_NONCE, voucher[body:], ad + voucher[:body])
        except InvalidTag:
            raise AuthenticationFailed("voucher opened but its payload fails AEAD under the opened key "
                                       "(altered, or made for another account or message)") from None
    return None


def _element(h: np.ndarray) -> bytes:
    return np.ascontiguousarray(h, dtype=np.uint8).tobytes()


TABLE_PARAMS = (
    Param("n_hashes", 3, "cuckoo hash functions = key ciphertexts per voucher", (2, 3, 4), int),
    Param("load", 0.85, "cuckoo table load (entries / slots); with 2 hash functions stay below 0.5", None, float),
    Param("blinding", "two-scalar", "voucher blinding: the paper's two-scalar random self-reduction, or one "
          "scalar (fewer device multiplications; privacy then rests on CDH in the random-oracle model)",
          BLINDINGS, str),
)


class _PsiBase(Scheme):
    family = "psi"
    eu_category = "encryption"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    magic_bundle: bytes = b"PSB2"
    magic_voucher: bytes = b"PSV2"

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

    def _voucher(self, dt: DeviceTable, element: bytes, plain: bytes, ad: bytes, rng: RandomSource) -> bytes:
        return make_voucher(dt, element, plain, ad, self.magic_voucher, rng, blinding=self.p["blinding"])


# --------------------------------------------------------------------------------------------
@register
class PsiAd(_PsiBase):
    """psi-ad: one voucher per image; the provider opens it iff the hash is on the list."""

    name = "psi-ad"
    verdict_to = "provider"
    leakage = {PROVIDER: ("verdict",)}
    trust = "provider's list (not verifiable by the device beyond its root digest); device software"
    matching = "exact"
    description = ("Server-learns PSI with associated data (ristretto255 via libsodium): blinded "
                   "cuckoo table on the device, one voucher per image, opens only on an exact match")
    params = TABLE_PARAMS
    PLAIN = REPORT_PLAIN

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        dt: DeviceTable = state["table"]
        x = _element(self.hasher.hash(image))
        ad = binding(ctx.account, ctx.message_id)
        return Prepared(self._voucher(dt, x, ad + visual_derivative(image), ad, ctx.rng))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return  # text-only message (or an omitted voucher: see docs/psi.md)
        bind = binding(ctx.account, ctx.message_id)
        res = open_voucher(state["table"], payload, bind, self.magic_voucher, self.PLAIN, state["seen"])
        if res is None:
            ctx.verdict(PROVIDER, False)
            return
        plain = res[1]
        ctx.opened(PROVIDER, "voucher", plain)
        if plain[:BIND_BYTES] != bind:  # authenticated by the AEAD, so only a dishonest device gets here
            raise AuthenticationFailed("opened voucher names another account or message")
        ctx.learn(PROVIDER, "report", {"message": ctx.message_id, "account": ctx.account,
                                       "derivative": plain[BIND_BYTES:].hex()})
        ctx.verdict(PROVIDER, True)


# --------------------------------------------------------------------------------------------
INNER_CT = NONCE_BYTES + REPORT_PLAIN + TAG_BYTES


def tpsi_plain(s: int) -> int:
    """Outer plaintext of a tpsi-ad voucher: share (64) | DHF value (4 s) | inner ciphertext (316)."""
    return SHARE_BYTES + DHF_BYTES * s + INNER_CT


@dataclass
class _Record:
    message_id: str
    share: Share
    inner: bytes


@dataclass
class _Account:
    """The provider's view of one account in tpsi-ad: opened vouchers until the key is known."""

    detector: DhfDetector
    records: list[_Record] = field(default_factory=list)
    by_x: dict[int, int] = field(default_factory=dict)
    key: bytes | None = None
    poly: list[int] | None = None  # coefficients through t genuine shares, for classifying later ones
    attempts: int = 0


@register
class TPsiAd(_PsiBase):
    """tpsi-ad: psi-ad outer layer + per-account t-of-n inner layer over distinct images +
    synthetic vouchers + a detectable hash function so synthetic vouchers never move t."""

    name = "tpsi-ad"
    verdict_to = "provider, after t distinct matches"
    # below t the provider still sees which vouchers' outer layer opened: real matches plus
    # synthetic vouchers. The count is noised, not hidden; ``count_advantage_bound`` is the
    # declared size, the below-threshold probe measures it from the provider's raw view
    # and resends of an image whose voucher opens repeat its share (a real one must, so that a
    # resend adds nothing to t; a synthetic one must too, or a repeat would prove a voucher real):
    # the provider links the resends of the synthetic_rate share of benign images (measured:
    # linkability_advantage, quick profile, once a raw view recorded the opened layers)
    leakage = {PROVIDER: ("verdict", "count", "link")}
    leakage_text = {PROVIDER: "verdicts once an account reaches t distinct matches; below t, how many of an "
                              "account's vouchers opened their outer layer (real matches plus synthetic "
                              "vouchers at synthetic_rate): an account with k < t matches is told from one "
                              "with none with advantage at most count_advantage_bound(n, k); and resends of "
                              "an image whose voucher opened (about synthetic_rate of benign images), which "
                              "repeat its share"}
    account_threshold = "t"
    trust = ("provider's list; device software (it draws the synthetic vouchers and keeps the PRF key); the "
             "threshold t is a promise kept by the device's sharing")
    matching = "exact"
    description = ("Threshold PSI-AD: each voucher carries a Shamir share of the account's inner key at a "
                   "keyed-PRF point of the image's hash (t counts distinct images); synthetic vouchers hide "
                   "the match count; a detectable hash function finds the t real shares among any number "
                   "(up to max_synthetic) of synthetic ones")
    params = TABLE_PARAMS + (
        Param("t", 3, "distinct matched images an account needs before the provider can read anything (Apple: 30)",
              None, int),
        Param("synthetic_rate", 0.05, "probability that a distinct image is sent as a synthetic voucher", None, float),
        Param("max_synthetic", 32, "DHF size s: most synthetic images per account and key (4 bytes per voucher each)",
              None, int),
    )
    magic_bundle = b"TPB2"
    magic_voucher = b"TPV2"

    def __init__(self, hasher, threshold=None, **params):
        super().__init__(hasher, threshold, **params)
        if not 1 <= self.p["t"] <= 1000:
            raise ConfigError(f"parameter 't' must be in 1..1000, got {self.p['t']}")
        if not 0 <= self.p["synthetic_rate"] < 1:
            raise ConfigError(f"parameter 'synthetic_rate' must be in [0, 1), got {self.p['synthetic_rate']}")
        if not 1 <= self.p["max_synthetic"] <= 100_000:
            raise ConfigError(f"parameter 'max_synthetic' must be in 1..100000, got {self.p['max_synthetic']}")
        self.PLAIN = tpsi_plain(self.p["max_synthetic"])

    def _provider_extra(self) -> dict:
        return {"accounts": {}, "reconstruct_s": 0.0}

    def count_advantage_bound(self, n_images: int, k_real: int) -> float:
        """Declared below-t leakage: the total-variation distance between the opened-voucher count
        of an account with k real matches among n distinct images, k + Binomial(n - k, p), and of
        one with none, Binomial(n, p) (p = synthetic_rate); no test on the count does better."""
        p = self.p["synthetic_rate"]

        def pmf(m: int, x: int) -> float:
            return math.comb(m, x) * p ** x * (1 - p) ** (m - x) if 0 <= x <= m else 0.0
        return 0.5 * sum(abs(pmf(n_images, x) - pmf(n_images - k_real, x - k_real)) for x in range(n_images + 1))

    def account_verdicts(self, db: KnownHashDatabase,
                         sent: list[tuple[str, str, Image.Image, bool]]) -> dict[str, bool]:
        """The rule this scheme computes: a message is detected iff its hash is on the list, it
        went out as a real voucher, and its account sent at least t distinct listed hashes as
        real vouchers in the run (the provider reads the earlier ones once the t-th arrives)."""
        hashes = {mid: _element(self.hasher.hash(img)) for mid, _, img, _ in sent}
        listed = {_element(h) for h in db.hashes_for(self.hasher.name)}
        distinct: dict[str, set[bytes]] = {}
        for mid, acct, _, real in sent:
            if real and hashes[mid] in listed:
                distinct.setdefault(acct, set()).add(hashes[mid])
        return {mid: real and hashes[mid] in listed and len(distinct.get(acct, ())) >= self.p["t"]
                for mid, acct, _, real in sent}

    # -- device ------------------------------------------------------------------------------
    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        state = super().device_load(bundle, account, ctx)
        draw = secret_stream(ctx.rng)  # reconstructed coefficients must not reveal the PRF key's generator
        secret = random_field_element(draw)
        state["prf_key"] = draw(PRF_KEY_BYTES)  # must persist for the account's key lifetime
        state["key"] = inner_key(secret, b"tpsi-inner")
        state["shares"] = ShareGenerator(secret, self.p["t"], draw)
        state["dhf"] = DetectableHash(self.p["t"], self.p["max_synthetic"], draw)
        state["synthetic"] = set()  # PRF ids of the images this device sends as synthetic
        return state

    def device_storage(self, state: Any) -> int:
        t = self.p["t"]
        return (PRF_KEY_BYTES + 32 + 32 * (t - 1) + state["dhf"].key_bytes + 16 * len(state["synthetic"]))

    def is_synthetic(self, state: Any, element: bytes) -> bool:
        """Whether this device sends ``element`` as a synthetic voucher: decided once per distinct
        image (a keyed PRF below the rate), so resends of an image are all real or all synthetic;
        never more than max_synthetic synthetic images per key (then the image goes real)."""
        key = state["prf_key"]
        ident = prf_bytes(key, element, b"id", 16)
        if ident in state["synthetic"]:
            return True
        u = int.from_bytes(prf_bytes(key, element, b"synthetic?", 8), "little") / 2**64
        if u < self.p["synthetic_rate"] and len(state["synthetic"]) < self.p["max_synthetic"]:
            state["synthetic"].add(ident)
            return True
        return False

    def voucher_for(self, state: Any, element: bytes, derivative: bytes, ctx: MessageContext) -> bytes:
        """The voucher for one image, given its hash bytes and visual derivative."""
        dt: DeviceTable = state["table"]
        ad = binding(ctx.account, ctx.message_id)
        key = state["prf_key"]
        s = self.p["max_synthetic"]
        draw = secret_stream(ctx.rng)  # a synthetic voucher's random inner bytes reach the provider in clear
        if self.is_synthetic(state, element):
            ctx.learn(DEVICE, "synthetic_sent", True)  # the device's own choice, never sent
            # a fake share and DHF value, fixed per image (resends repeat them, as a real image's do)
            fake = Share(share_x_prf(key, element, b"syn-x"),
                         int.from_bytes(prf_bytes(key, element, b"syn-y", 64), "little") % L)
            v = dhf_random(s, lambda n: prf_bytes(key, element, b"syn-v", n))
            plain = fake.encode() + dhf_encode(v) + draw(INNER_CT)
            return make_synthetic(dt, plain, ad, self.magic_voucher, draw)
        share = state["shares"].share_at(share_x_prf(key, element))
        nonce = draw(NONCE_BYTES)
        inner = nonce + AESGCM(state["key"]).encrypt(nonce, ad + derivative, ad)
        plain = share.encode() + dhf_encode(state["dhf"].evaluate(share.x)) + inner
        return self._voucher(dt, element, plain, ad, draw)

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        return Prepared(self.voucher_for(state, _element(self.hasher.hash(image)), visual_derivative(image), ctx))

    # -- provider ----------------------------------------------------------------------------
    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return
        ad = binding(ctx.account, ctx.message_id)
        res = open_voucher(state["table"], payload, ad, self.magic_voucher, self.PLAIN, state["seen"])
        ctx.learn(PROVIDER, "outer_open", res is not None)
        if res is None:
            return
        ctx.opened(PROVIDER, "outer layer", res[1])  # real match or synthetic: it cannot tell which
        plain, t, s = res[1], self.p["t"], self.p["max_synthetic"]
        share = Share.decode(plain[:SHARE_BYTES])
        v = dhf_decode(plain[SHARE_BYTES:SHARE_BYTES + DHF_BYTES * s], s)
        rec = _Record(ctx.message_id, share, plain[SHARE_BYTES + DHF_BYTES * s:])
        acct: _Account = state["accounts"].get(ctx.account)
        if acct is None:
            acct = state["accounts"][ctx.account] = _Account(DhfDetector(t, s))
        if acct.key is not None:
            self._reveal(acct, [rec], ctx)
            return
        idx = len(acct.records)
        acct.records.append(rec)
        if share.x in acct.by_x:  # the same image again (the same share): it adds nothing
            return
        acct.by_x[share.x] = idx
        t0 = time.process_time()
        support = acct.detector.add(dhf_column(share.x, v, t), idx)
        if support is not None:
            self._reconstruct(acct, support, ctx)
        state["reconstruct_s"] += time.process_time() - t0

    def _reconstruct(self, acct: _Account, support: list[int], ctx: MessageContext) -> None:
        """Interpolate from the DHF support (t real shares), confirm on their inner layers."""
        t = self.p["t"]
        acct.attempts += 1
        shares = [acct.records[i].share for i in support]
        if len(shares) < t:
            return
        if len(shares) == t:
            secret, basis = interpolate_at(shares, 0), shares
        else:  # only if a synthetic column joined a dependency (probability < 2^-31 per voucher)
            rr = robust_reconstruct(shares, t)
            if rr is None:
                return
            secret, basis = rr.secret, [shares[i] for i in rr.genuine[:t]]
        key = inner_key(secret, b"tpsi-inner")
        if any(_try_inner(key, acct.records[i].message_id, ctx.account, acct.records[i].inner) is None
               for i in support if acct.records[i].share in basis):
            return
        acct.key, acct.poly = key, interpolate_coeffs(basis)
        pending, acct.records, acct.by_x = acct.records, [], {}
        acct.detector = None  # type: ignore[assignment]
        self._reveal(acct, pending, ctx)

    def _reveal(self, acct: _Account, recs: list[_Record], ctx: MessageContext) -> None:
        for rec in recs:
            plain = None
            if evaluate_poly(acct.poly, rec.share.x) == rec.share.y:
                plain = _try_inner(acct.key, rec.message_id, ctx.account, rec.inner)
            if plain is None:  # off the polynomial or garbage inner layer: a synthetic voucher
                ctx.learn(PROVIDER, "synthetic", True, message_id=rec.message_id)
                continue
            ctx.ledger.record_opened(PROVIDER, "inner layer", plain, rec.message_id)
            ctx.learn(PROVIDER, "report", {"message": rec.message_id, "account": ctx.account,
                                           "derivative": plain[BIND_BYTES:].hex()}, message_id=rec.message_id)
            ctx.verdict(PROVIDER, True, message_id=rec.message_id)


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
    leakage = {PROVIDER: ("verdict", "chunks")}
    leakage_text = {PROVIDER: "the verdict and which chunk positions equal a list value (also for near "
                              "misses and benign images whose chunks collide with the list)"}
    trust = "provider's list; device software"
    matching = "chunked"
    description = ("psi-ad over hash chunks (multi-index): one chunk voucher per chunk, each carrying a "
                   "share of a per-image key; the report opens at min_chunks chunk matches")
    params = TABLE_PARAMS + (
        Param("chunk_bits", 32, "bits per chunk (the list holds one element per (chunk index, value)); 16-bit "
              "chunks stop being private near 10^4 list entries (docs/leakage.md)",
              (8, 16, 32), int),
        Param("min_chunks", 2, "chunk matches that make a match (k of a k-of-n sharing of the report key)",
              None, int),
    )
    magic_bundle = b"PLB2"
    magic_voucher = b"PLV2"

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
        draw = secret_stream(ctx.rng)  # one stream per message: shares and nonce reach the provider
        secret = random_field_element(draw)
        gen = ShareGenerator(secret, self.p["min_chunks"], draw)
        nonce = draw(NONCE_BYTES)
        inner = nonce + AESGCM(inner_key(secret, b"lsh-image")).encrypt(nonce, ad + visual_derivative(image), ad)
        vs = [self._voucher(dt, c, gen.share_for(bytes([i])).encode() + ad, ad, draw)
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
            ctx.opened(PROVIDER, f"chunk voucher {i}", plain)
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
                if plain is not None:
                    ctx.opened(PROVIDER, "derivative", plain)
        if plain is None:
            ctx.verdict(PROVIDER, False)
            return
        ctx.learn(PROVIDER, "report", {"message": ctx.message_id, "account": ctx.account,
                                       "chunks": matched, "derivative": plain[BIND_BYTES:].hex()})
        ctx.verdict(PROVIDER, True)


__all__ = ["PsiAd", "TPsiAd", "PsiAdLsh", "build_table", "load_table", "make_voucher", "make_synthetic",
           "open_voucher", "voucher_len", "device_mults", "tpsi_plain", "visual_derivative", "binding",
           "ProviderTable", "DeviceTable", "BLINDINGS"]
