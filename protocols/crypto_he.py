"""Homomorphic-encryption engines for the ``he-hamming`` (BFV) and ``he-cosine`` (CKKS) schemes.

Both engines use Microsoft SEAL through ``tenseal.sealapi``. Every value that crosses between
roles is ``bytes`` (SEAL objects do not pickle; they are written with SEAL's own serializer,
zstd-compressed, inside a small length-prefixed frame). Bytes that do not parse, do not match
the expected parameters or fail SEAL's validity checks raise :class:`MalformedMessage`.

BFV Hamming matching (``HammingKeyHolder`` / ``HammingQueryEncryptor`` / ``HammingMatcher``)
-------------------------------------------------------------------------------------------
Parameters: N = 16384, SEAL's 128-bit default coefficient modulus for N (9 primes, 438 bits,
389 bits for data), plain modulus p = 65537 (the smallest batching prime for N: p = 1 mod 2N).
N = 8192 does not have the depth (measured: the threshold test alone exhausts its budget).

Layout ("one list entry per slot", Halevi-Shoup diagonals with baby-step/giant-step):
the query ciphertext holds the 256 query bits tiled over all N slots (x[s mod 256]); slot s of
a list block holds list entry y_s. With w = 1 - 2y (mod p) and rot_i(q)[s] = x[(s+i) mod 256],
``sum_i rot_i(q)[s] * w_s[(s+i) mod 256] + |y_s|`` = sum_k x_k (1 - 2 y_k) + |y| = HD(x, y_s)
in every slot at once. i = a + 16 b: the 16 baby rotations of the query are computed once
per query (and kept in NTT form) and reused by every block; each block then costs 256
plaintext multiplies in NTT form and 15 giant rotations of partial sums (Horner with one
rotation key). Only two Galois keys (steps 1 and 16) are needed, which keeps the public bundle
small (~26 MB instead of ~430 MB for SEAL's default key set). Slot utilisation is
n / (blocks * N): 100 % except for the padding of the last block.

Threshold test: f(d) = prod_{i=0..tau} (d - i), evaluated as e = d (d - tau) and
prod_i (e + i (tau - i)) over the (tau+1)/2 pairs (i, tau - i) (plus the middle factor
d - tau/2 when tau is even): 16 ciphertext products instead of 31 for tau = 31, depth 5.
Because d is an integer in [0, 256] and p = 65537 is a prime > 256, each factor d - i is
zero mod p iff d = i, and F_p is a field (no zero divisors): f(d) = 0 iff d <= tau. No false
zero can occur; decryption is exact while the noise budget is positive.

Aggregation: the f of up to G list blocks (G = 16 with tau = 31, the largest that leaves
a margin of noise budget) are multiplied slot-wise, so a slot is zero iff ANY of the G entries
laid out in that slot matches. Every slot is then multiplied by a fresh uniform mask
r in [1, p-1], which makes every nonzero slot uniform in F_p^*. The provider lays its list out
in a fresh secret random permutation for every query (the diagonals are re-encoded per query
anyway: caching NTT plaintexts would take 256 MB per block), so a zero's position is uniform
and unlinkable across queries. After each product the ciphertext is modulus-switched down
as far as a measured noise model allows (this roughly halves the cost of the deeper levels),
and each result ciphertext is switched to the last prime before it is sent (~220 KB).

Noise budget (measured, bits): fresh 365; after distances 334; after the threshold test 188;
each further product level -30; mask -21; a group of 16 blocks leaves ~50 bits before the
final switch to one prime (which caps the budget at ~24 bits, still > 0).

Measured here (2-core VM, CPU time per query, synthetic list): one block (n <= 16384) ~2.2 s
provider, 7 blocks (n = 1e5) 15.6 s (~150 us per entry: ~60 % diagonal encoding and
plaintext products, ~35 % threshold test); device encrypt ~8 ms; key holder decrypt ~2.5 ms;
query 0.91 MB (seeded secret-key encryption; 1.8 MB with the public key); result 224 KB per
group of 16 blocks; public bundle 26.7 MB (sent once per key holder). Slot utilisation is
n / (ceil(n / 16384) * 16384): the only waste is the last block's padding.

What the key holder learns: the number of zero slots across ceil(K/G) result ciphertexts
(K = ceil(n/N) blocks), i.e. the number of slot groups that hold at least one entry within
tau -- at most the number of matching entries -- and nothing about which entry or what
distance (nonzero slots are uniform in F_p^*, positions are a fresh random permutation). The
number of result ciphertexts reveals ceil(n / (G N)). NOT provided: circuit privacy in the
formal sense (no noise flooding; the final switch to one prime replaces most of the
computation's noise by fresh rounding noise, without a proof) and query well-formedness: a
malicious key holder could submit a non-binary or non-tiled query and learn one chosen
linear predicate of the list per slot group; preventing it needs zero-knowledge proofs.
The mask and permutation RNG is numpy's seeded PCG64 for reproducibility, not a CSPRNG.
SEAL draws key and encryption randomness from the OS (a fixed-seed SEAL PRNG factory would
reuse one stream for every encryption, which would break security).

CKKS similarity (``CkksKeyHolder`` / ``CkksMatcher``)
-----------------------------------------------------
N = 8192, coefficient modulus 60-40-40-60 bits (SEAL's 128-bit bound for N = 8192 is 218 bits),
scale 2^40, 4096 slots. Same diagonal/baby-step-giant-step layout (256 real features tiled in
the query, one list entry per slot), then r * (s - theta) with a fresh positive r per slot
(log-uniform in [1, 2^8]). The key holder learns, per slot, the sign (match or not; positions
permuted per query) and r |s - theta|, i.e. |s - theta| up to an unknown factor in [1, 256].
The result is one ciphertext (last level, ~130 KB) per 4096 list entries: no aggregation.
Measured here: ~230 ms provider CPU per 4096-entry block (1e5 entries: 5.2 s, result 3.3 MB),
query 162 KB, public bundle 1.9 MB, max |encrypted - plaintext cosine| ~3e-7 on random inputs.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import tenseal.sealapi as seal

from .errors import ConfigError, InputError, MalformedMessage

__all__ = [
    "BfvParams",
    "HammingKeyHolder",
    "HammingQueryEncryptor",
    "HammingMatcher",
    "HammingDetail",
    "CkksParams",
    "CkksKeyHolder",
    "CkksMatcher",
    "CkksQueryEncryptor",
    "device_bundle_of",
    "check_device_bundle",
    "unit_normalise",
]

_SEC = seal.SEC_LEVEL_TYPE.TC128

# ---------------------------------------------------------------------------- wire frames


def _frame(tag: bytes, parts: list[bytes]) -> bytes:
    """tag(8) | u32 count | (u64 length | bytes)* | SHA-256 of all before: explicit framing, no
    pickle. The digest is a transmission checksum, not authentication (schemes seal payloads):
    SEAL's compressed streams can load after a byte splice, and a corrupted ciphertext must not
    be evaluated into a spurious verdict."""
    out = [tag, struct.pack(">I", len(parts))]
    for part in parts:
        out.append(struct.pack(">Q", len(part)))
        out.append(part)
    body = b"".join(out)
    return body + hashlib.sha256(body).digest()


def _unframe(tag: bytes, data: bytes, what: str, count: int | None = None) -> list[bytes]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 44 or data[:8] != tag:
        raise MalformedMessage(f"{what}: wrong tag or truncated header")
    data, digest = data[:-32], data[-32:]
    if hashlib.sha256(data).digest() != digest:
        raise MalformedMessage(f"{what}: checksum mismatch (corrupted or truncated)")
    (n,) = struct.unpack(">I", data[8:12])
    if count is not None and n != count:
        raise MalformedMessage(f"{what}: expected {count} parts, got {n}")
    if n == 0 or n > 1_000_000:
        raise MalformedMessage(f"{what}: implausible part count {n}")
    parts, pos = [], 12
    for _ in range(n):
        if pos + 8 > len(data):
            raise MalformedMessage(f"{what}: truncated part length")
        (ln,) = struct.unpack(">Q", data[pos : pos + 8])
        pos += 8
        if pos + ln > len(data):
            raise MalformedMessage(f"{what}: truncated part")
        parts.append(data[pos : pos + ln])
        pos += ln
    if pos != len(data):
        raise MalformedMessage(f"{what}: {len(data) - pos} trailing bytes")
    return parts


# ------------------------------------------------------------------- SEAL (de)serialization
# tenseal.sealapi 0.3.18 serializes to file paths only; a private temporary directory is the
# only way to reach bytes.


def _to_bytes(obj) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "o")
        obj.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def _from_bytes(make: Callable[[], object], ctx, data: bytes, what: str):
    obj = make()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "o")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            if ctx is None:
                obj.load(path)
            else:
                obj.load(ctx, path)
        except Exception as exc:  # SEAL raises ValueError/RuntimeError on any bad byte
            raise MalformedMessage(f"{what}: does not load ({exc})") from None
    if ctx is not None:
        try:
            ok = seal.is_valid_for(obj, ctx)
        except Exception:
            ok = False
        if not ok:
            raise MalformedMessage(f"{what}: not valid for the encryption parameters")
    return obj


def _galois_elt(step: int, n: int) -> int:
    """SEAL's Galois element for a left rotation by ``step`` (rows in BFV, vector in CKKS)."""
    m = 2 * n
    pos = step if step > 0 else n // 2 + step
    return pow(3, pos, m)


def _check_query_ct(ct, ctx, n: int, what: str) -> None:
    if ct.size() != 2 or ct.poly_modulus_degree() != n or ct.parms_id() != ctx.first_parms_id():
        raise MalformedMessage(f"{what}: wrong size, degree or level")


def _bits_of(x: np.ndarray, bits: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.shape != (bits // 8,):
        raise InputError(f"{what}: expected uint8 array of shape ({bits // 8},), got {x.dtype} {x.shape}")
    return np.unpackbits(x).astype(np.int64)


# ================================================================================== BFV

# Measured noise model for N = 16384, p = 65537 (invariant noise budget, bits); see the module
# docstring. The provider cannot see the budget, so its modulus-switching schedule and the
# aggregation group size follow from these constants (tests decrypt and check the budget).
_FRESH = 362
_DIST_COST = 32
_MULT_COST = 30
_MASK_COST = 22
_CEIL_SLACK = 27  # budget ceiling at a level = bits of its primes - this
_MARGIN = 12
_FINAL_MIN = 30


@dataclass(frozen=True)
class BfvParams:
    """BFV parameter set for encrypted Hamming matching (only the measured set is accepted)."""

    poly_degree: int = 16384
    plain_bits: int = 17
    threshold: int = 31
    bits: int = 256
    baby: int = 16
    group_blocks: int = 0  # 0: as large as the noise model allows

    def __post_init__(self) -> None:
        if self.poly_degree != 16384:
            raise ConfigError(f"poly_degree={self.poly_degree}: only 16384 is supported (8192 lacks the depth)")
        if self.plain_bits != 17:
            raise ConfigError(f"plain_bits={self.plain_bits}: only 17 (p = 65537) is measured")
        if self.bits % 8 or self.bits <= 0 or (self.poly_degree // 2) % self.bits or self.bits >= 65537:
            raise ConfigError(f"bits={self.bits}: must be a multiple of 8 dividing {self.poly_degree // 2}")
        if self.baby <= 0 or self.bits % self.baby:
            raise ConfigError(f"baby={self.baby}: must divide bits={self.bits}")
        if not 0 <= self.threshold < self.bits:
            raise ConfigError(f"threshold={self.threshold}: must be in [0, {self.bits})")
        if self.max_group_blocks() < 1:
            raise ConfigError(f"threshold={self.threshold}: threshold test too deep for the noise budget")
        if self.group_blocks < 0 or self.group_blocks > self.max_group_blocks():
            raise ConfigError(f"group_blocks={self.group_blocks}: must be in [0, {self.max_group_blocks()}]")

    @classmethod
    def for_list_size(cls, n: int, threshold: int = 31) -> "BfvParams":
        """The documented set for any list size: N = 16384, p = 65537, G from the noise model.

        N = 8192 cannot hold the depth-5 test; N = 32768 would double every operation and
        quadruple the keys for aggregation depth a 1e7 list does not need, so the set does not
        change with n; the list size only sets the number of blocks and result ciphertexts.
        """
        if n < 1:
            raise ConfigError(f"n={n}: list size must be >= 1")
        return cls(threshold=threshold)

    @property
    def slots(self) -> int:
        return self.poly_degree

    def n_factors(self) -> int:
        return (self.threshold + 1) // 2 + (1 if self.threshold % 2 == 0 else 0)

    def test_depth(self) -> int:
        """Multiplicative depth of the threshold test on one block."""
        return 1 + max(0, math.ceil(math.log2(self.n_factors()))) if self.threshold > 0 else 0

    def max_group_blocks(self) -> int:
        after_test = _FRESH - _DIST_COST - _MULT_COST * self.test_depth()
        levels = (after_test - _MASK_COST - _FINAL_MIN) // _MULT_COST
        return 0 if levels < 0 else 2 ** min(levels, 10)

    def group(self) -> int:
        return self.group_blocks or self.max_group_blocks()

    def blocks_for(self, n: int) -> int:
        return max(1, math.ceil(n / self.slots))


def _bfv_parms(params: BfvParams) -> seal.EncryptionParameters:
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(params.poly_degree)
    parms.set_coeff_modulus(seal.CoeffModulus.BFVDefault(params.poly_degree, _SEC))
    parms.set_plain_modulus(seal.PlainModulus.Batching(params.poly_degree, params.plain_bits))
    return parms


def _context(parms: seal.EncryptionParameters):
    ctx = seal.SEALContext(parms, True, _SEC)
    if not ctx.parameters_set():
        raise ConfigError(f"encryption parameters rejected: {ctx.parameters_error_message()}")
    return ctx


def _bfv_steps(params: BfvParams) -> list[int]:
    return sorted({1, params.baby})


@dataclass
class HammingDetail:
    """Everything a key holder can read off a result (tests and leakage accounting)."""

    match: bool
    zero_slots: int
    ciphertexts: int
    min_noise_budget: int


class _BfvPublic:
    """The public side of a key holder's bundle: context, public key, relin and Galois keys."""

    TAG = b"E2HBFVpk"

    def __init__(self, bundle: bytes, params: BfvParams):
        parts = _unframe(self.TAG, bundle, "BFV public bundle", 4)
        parms = _from_bytes(lambda: seal.EncryptionParameters(seal.SCHEME_TYPE.BFV), None, parts[0], "BFV parameters")
        expected = _bfv_parms(params)
        if (
            parms.scheme() != seal.SCHEME_TYPE.BFV
            or parms.poly_modulus_degree() != expected.poly_modulus_degree()
            or parms.plain_modulus().value() != expected.plain_modulus().value()
            or [m.value() for m in parms.coeff_modulus()] != [m.value() for m in expected.coeff_modulus()]
        ):
            raise MalformedMessage("BFV public bundle: parameters differ from the agreed parameter set")
        self.params = params
        self.ctx = _context(expected)
        self.pk = _from_bytes(seal.PublicKey, self.ctx, parts[1], "BFV public key")
        self.rk = _from_bytes(seal.RelinKeys, self.ctx, parts[2], "BFV relinearization keys")
        self.gk = _from_bytes(seal.GaloisKeys, self.ctx, parts[3], "BFV Galois keys")
        for step in _bfv_steps(params):
            if not self.gk.has_key(_galois_elt(step, params.poly_degree)):
                raise MalformedMessage(f"BFV Galois keys: no key for rotation step {step}")
        self.encoder = seal.BatchEncoder(self.ctx)
        self.p = expected.plain_modulus().value()


def _encode_query(encoder, x_bits: np.ndarray, slots: int) -> seal.Plaintext:
    pt = seal.Plaintext()
    encoder.encode(np.tile(x_bits, slots // x_bits.size).astype(np.uint64).tolist(), pt)
    return pt


class _KeyHolder:
    """Key generation shared by the BFV and CKKS key holders: the secret key stays here, the
    public bundle (parameters, public key, evaluation keys) is what the matcher receives."""

    params: Any

    def _keygen(self, parms, steps: Sequence[int], tag: bytes, relin: bool) -> None:
        self._parms = parms
        self.ctx = _context(parms)
        kg = seal.KeyGenerator(self.ctx)
        self._sk = kg.secret_key()
        pk = seal.PublicKey()
        kg.create_public_key(pk)
        elts = [_galois_elt(s, self.params.poly_degree) for s in steps]
        # Serializable (seed-compressed) key objects: half the bytes of materialised keys.
        parts = [_to_bytes(parms), _to_bytes(pk)]
        if relin:
            parts.append(_to_bytes(kg.create_relin_keys()))
        parts.append(_to_bytes(kg.create_galois_keys(elts)))
        self._bundle = _frame(tag, parts)
        self._encryptor = seal.Encryptor(self.ctx, self._sk)
        self._decryptor = seal.Decryptor(self.ctx, self._sk)

    def public_bundle(self) -> bytes:
        """Parameters, public key, (relinearization keys,) and the Galois keys (bytes)."""
        return self._bundle

    def secret_key_bytes(self) -> int:
        """Serialized size of the secret key: what a key-holding device must store."""
        return len(_to_bytes(self._sk))


class HammingKeyHolder(_KeyHolder):
    """Holds the BFV secret key (the device itself, or a third party for many devices)."""

    QTAG = b"E2HBFVq1"
    RTAG = b"E2HBFVr1"

    def __init__(self, params: BfvParams | None = None, seed: int | None = None):
        # ``seed`` is accepted for interface symmetry only: SEAL keys always use OS randomness.
        self.params = params or BfvParams()
        self._keygen(_bfv_parms(self.params), _bfv_steps(self.params), _BfvPublic.TAG, relin=True)
        self._encoder = seal.BatchEncoder(self.ctx)

    def encrypt_query(self, x: np.ndarray) -> bytes:
        """Secret-key (seeded, half-size) encryption of the tiled query bits; for a device key holder."""
        bits = _bits_of(x, self.params.bits, "query hash")
        ser = self._encryptor.encrypt_symmetric(_encode_query(self._encoder, bits, self.params.slots))
        return _frame(self.QTAG, [_to_bytes(ser)])

    def _decrypt_all(self, result: bytes) -> tuple[list[np.ndarray], list[int]]:
        parts = _unframe(self.RTAG, result, "BFV result")
        slots, budgets = [], []
        for i, part in enumerate(parts):
            ct = _from_bytes(seal.Ciphertext, self.ctx, part, f"BFV result ciphertext {i}")
            if ct.size() != 2 or ct.is_ntt_form():
                raise MalformedMessage(f"BFV result ciphertext {i}: wrong size or form")
            budget = self._decryptor.invariant_noise_budget(ct)
            if budget <= 0:
                raise MalformedMessage(f"BFV result ciphertext {i}: noise budget exhausted, cannot decrypt")
            budgets.append(budget)
            pt = seal.Plaintext()
            self._decryptor.decrypt(ct, pt)
            slots.append(np.asarray(self._encoder.decode_uint64(pt), dtype=np.int64))
        return slots, budgets

    def decrypt_slots(self, result: bytes) -> np.ndarray:
        """Every decrypted slot, result ciphertexts concatenated: exactly the key holder's view."""
        return np.concatenate(self._decrypt_all(result)[0])

    def decrypt_detail(self, result: bytes) -> HammingDetail:
        slots, budgets = self._decrypt_all(result)
        zeros = sum(int(np.count_nonzero(s == 0)) for s in slots)
        return HammingDetail(zeros > 0, zeros, len(slots), min(budgets))

    def decrypt_verdict(self, result: bytes) -> bool:
        """True iff some list entry is within the threshold of the query."""
        return self.decrypt_detail(result).match


DEVICE_TAG_BFV = b"E2HBFVdv"
DEVICE_TAG_CKKS = b"E2HCKKdv"


def device_bundle_of(public_bundle: bytes) -> bytes:
    """The part of a key holder's public bundle an encrypting device needs: parameters and
    public key only (no relinearization or Galois keys: the device never evaluates)."""
    if isinstance(public_bundle, (bytes, bytearray)) and bytes(public_bundle[:8]) == _BfvPublic.TAG:
        parts = _unframe(_BfvPublic.TAG, public_bundle, "BFV public bundle", 4)
        return _frame(DEVICE_TAG_BFV, parts[:2])
    parts = _unframe(_CkksPublic.TAG, public_bundle, "CKKS public bundle", 3)
    return _frame(DEVICE_TAG_CKKS, parts[:2])


def check_device_bundle(bundle: bytes) -> None:
    """Cheap structural check (tag, framing, checksum) without building a SEAL context."""
    tag = bytes(bundle[:8]) if isinstance(bundle, (bytes, bytearray)) else b""
    if tag not in (DEVICE_TAG_BFV, DEVICE_TAG_CKKS):
        raise MalformedMessage("device bundle: wrong tag")
    _unframe(tag, bundle, "device bundle", 2)


class _BfvEncryptOnly:
    """Parameters and public key from a device bundle (or from a full public bundle)."""

    def __init__(self, bundle: bytes, params: BfvParams):
        if isinstance(bundle, (bytes, bytearray)) and bytes(bundle[:8]) == _BfvPublic.TAG:
            bundle = device_bundle_of(bundle)
        parts = _unframe(DEVICE_TAG_BFV, bundle, "BFV device bundle", 2)
        parms = _from_bytes(lambda: seal.EncryptionParameters(seal.SCHEME_TYPE.BFV), None, parts[0], "BFV parameters")
        expected = _bfv_parms(params)
        if (
            parms.scheme() != seal.SCHEME_TYPE.BFV
            or parms.poly_modulus_degree() != expected.poly_modulus_degree()
            or parms.plain_modulus().value() != expected.plain_modulus().value()
            or [m.value() for m in parms.coeff_modulus()] != [m.value() for m in expected.coeff_modulus()]
        ):
            raise MalformedMessage("BFV device bundle: parameters differ from the agreed parameter set")
        self.ctx = _context(expected)
        self.pk = _from_bytes(seal.PublicKey, self.ctx, parts[1], "BFV public key")
        self.encoder = seal.BatchEncoder(self.ctx)


class HammingQueryEncryptor:
    """Public-key query encryption for a device that does not hold the secret key.

    Accepts the device bundle (parameters + public key, see :func:`device_bundle_of`) or the
    full public bundle; only the public key is used.
    """

    def __init__(self, public_bundle: bytes, params: BfvParams | None = None):
        self.params = params or BfvParams()
        self._pub = _BfvEncryptOnly(public_bundle, self.params)
        self._encryptor = seal.Encryptor(self._pub.ctx, self._pub.pk)

    def encrypt_query(self, x: np.ndarray) -> bytes:
        bits = _bits_of(x, self.params.bits, "query hash")
        ct = seal.Ciphertext()
        self._encryptor.encrypt(_encode_query(self._pub.encoder, bits, self.params.slots), ct)
        return _frame(HammingKeyHolder.QTAG, [_to_bytes(ct)])


@dataclass
class _Node:
    """A ciphertext with the noise budget the model predicts for it."""

    ct: object
    budget: int


class HammingMatcher:
    """Provider side: encrypted distances to every list entry, threshold test, aggregation."""

    def __init__(self, public_bundle: bytes, list_hashes: np.ndarray, params: BfvParams | None = None,
                 rng: np.random.Generator | None = None):
        self.params = params or BfvParams()
        y = np.asarray(list_hashes)
        if y.ndim != 2 or y.dtype != np.uint8 or y.shape[1] != self.params.bits // 8 or y.shape[0] < 1:
            raise InputError(f"list hashes: expected uint8 array (n>=1, {self.params.bits // 8}), got {y.dtype} {y.shape}")
        self._y = np.ascontiguousarray(y)
        self._pub = _BfvPublic(public_bundle, self.params)
        self._rng = rng if rng is not None else np.random.default_rng()
        self._ev = seal.Evaluator(self._pub.ctx)
        ctx = self._pub.ctx
        # primes per level (first data level first) -> budget ceiling at each level
        self._levels = []
        cd = ctx.first_context_data()
        while cd is not None:
            bits = sum(m.bit_count() for m in cd.parms().coeff_modulus())
            self._levels.append((cd.parms_id(), bits - _CEIL_SLACK))
            cd = cd.next_context_data()
        self.n = int(y.shape[0])
        self.blocks = self.params.blocks_for(self.n)
        self.last_stats: dict = {}
        self._last_perm: np.ndarray | None = None
        self._final_switch = True  # False only to read the budget before the last switch
        tau = self.params.threshold
        self._pair_consts = [i * (tau - i) for i in range((tau + 1) // 2)]
        slots, half, bits = self.params.slots, self.params.slots // 2, self.params.bits
        s = np.arange(slots)
        rowstart = (s // half) * half
        self._src = [rowstart + ((s - rowstart - self.params.baby * b) % half) for b in range(bits // self.params.baby)]
        self._col = [(s + a) % bits for a in range(self.params.baby)]

    @property
    def slot_utilisation(self) -> float:
        return self.n / (self.blocks * self.params.slots)

    def slot_order(self) -> np.ndarray:
        """List index laid out in each (block, slot) of the last evaluation, -1 for padding.

        Block k lands in result ciphertext k // G at the same slot. Provider-secret; tests only.
        """
        if self._last_perm is None:
            raise InputError("slot_order: no evaluation yet")
        return np.where(self._last_perm < self.n, self._last_perm, -1)

    def _plain_const(self, c: int) -> seal.Plaintext:
        pt = seal.Plaintext()
        self._pub.encoder.encode([int(c)] * self.params.slots, pt)
        return pt

    def _encode(self, vals: np.ndarray) -> seal.Plaintext:
        pt = seal.Plaintext()
        self._pub.encoder.encode(vals.astype(np.uint64).tolist(), pt)
        return pt

    # --- noise-model-driven modulus switching ------------------------------------------
    def _level_index(self, ct) -> int:
        pid = ct.parms_id()
        for i, (lp, _) in enumerate(self._levels):
            if lp == pid:
                return i
        raise AssertionError("ciphertext at an unknown level")

    def _settle(self, node: _Node) -> _Node:
        """Switch down while the next level's ceiling still holds the predicted budget."""
        i = self._level_index(node.ct)
        while i + 1 < len(self._levels) and self._levels[i + 1][1] >= node.budget + _MARGIN:
            self._ev.mod_switch_to_next_inplace(node.ct)
            i += 1
        node.budget = min(node.budget, self._levels[i][1])
        return node

    def _mul(self, a: _Node, b: _Node) -> _Node:
        ia, ib = self._level_index(a.ct), self._level_index(b.ct)
        if ia < ib:
            self._ev.mod_switch_to_inplace(a.ct, b.ct.parms_id())
        elif ib < ia:
            self._ev.mod_switch_to_inplace(b.ct, a.ct.parms_id())
        out = seal.Ciphertext()
        self._ev.multiply(a.ct, b.ct, out)
        self._ev.relinearize_inplace(out, self._pub.rk)
        return self._settle(_Node(out, min(a.budget, b.budget) - _MULT_COST))

    def _product(self, nodes: list[_Node]) -> _Node:
        while len(nodes) > 1:
            nxt = [self._mul(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
            if len(nodes) % 2:
                nxt.append(nodes[-1])
            nodes = nxt
        return nodes[0]

    def _add_const(self, ct, c: int):
        out = seal.Ciphertext()
        self._ev.add_plain(ct, self._plain_const(c % self._pub.p), out)
        return out

    # --- the evaluation ----------------------------------------------------------------
    def _parse_query(self, query: bytes):
        (part,) = _unframe(HammingKeyHolder.QTAG, query, "BFV query", 1)
        ct = _from_bytes(seal.Ciphertext, self._pub.ctx, part, "BFV query ciphertext")
        _check_query_ct(ct, self._pub.ctx, self.params.slots, "BFV query ciphertext")
        if ct.is_ntt_form():
            raise MalformedMessage("BFV query ciphertext: unexpected NTT form")
        return ct

    def _block_distance(self, rot_ntt: list, y_bits: np.ndarray, ysum: np.ndarray):
        """HD to the N entries of one block (rows of y_bits in slot order; pad rows weight 0)."""
        p, ev, pid = self._pub.p, self._ev, self._pub.ctx.first_parms_id()
        w = np.where(y_bits >= 0, 1 - 2 * y_bits, 0) % p  # pad rows are -1 -> weight 0
        baby, slots = self.params.baby, np.arange(self.params.slots)
        acc = None
        for b in reversed(range(len(self._src))):
            wb = w[self._src[b]]
            part = None
            for a in range(baby):
                pt = self._encode(wb[slots, self._col[a]])
                ptn = seal.Plaintext()
                ev.transform_to_ntt(pt, pid, ptn)
                prod = seal.Ciphertext()
                ev.multiply_plain(rot_ntt[a], ptn, prod)
                if part is None:
                    part = prod
                else:
                    ev.add_inplace(part, prod)
            ev.transform_from_ntt_inplace(part)
            if acc is None:
                acc = part
            else:  # Horner over giant steps: acc <- part + rot_baby(acc)
                rot = seal.Ciphertext()
                ev.rotate_rows(acc, baby, self._pub.gk, rot)
                ev.add(rot, part, acc)
        ev.add_plain_inplace(acc, self._encode(ysum % p))
        return acc

    def _threshold(self, d) -> _Node:
        tau = self.params.threshold
        dn = _Node(d, _FRESH - _DIST_COST)
        if tau == 0:
            return dn
        e = self._mul(_Node(d, dn.budget), _Node(self._add_const(d, -tau), dn.budget))
        factors = [e if c == 0 else _Node(self._add_const(e.ct, c), e.budget) for c in self._pair_consts]
        if tau % 2 == 0:
            factors.append(_Node(self._add_const(d, -(tau // 2)), dn.budget))
        return self._product(factors)

    def evaluate(self, query: bytes) -> bytes:
        """Masked, aggregated result ciphertexts (a frame of ceil(blocks / G) ciphertexts)."""
        t0 = time.perf_counter()
        q = self._parse_query(query)
        ev, params = self._ev, self.params
        rot = [q]
        for _ in range(1, params.baby):
            c = seal.Ciphertext()
            ev.rotate_rows(rot[-1], 1, self._pub.gk, c)
            rot.append(c)
        rot_ntt = []
        for c in rot:
            cn = seal.Ciphertext()
            ev.transform_to_ntt(c, cn)
            rot_ntt.append(cn)
        t_rot = time.perf_counter() - t0
        slots, n = params.slots, self.n
        perm = self._rng.permutation(self.blocks * slots)  # fresh secret layout per query
        self._last_perm = perm
        group = params.group()
        results, t_dist, t_test = [], 0.0, 0.0
        for g0 in range(0, self.blocks, group):
            fs = []
            for blk in range(g0, min(g0 + group, self.blocks)):
                idx = perm[blk * slots : (blk + 1) * slots]
                real = idx < n
                bits = np.full((slots, params.bits), -1, dtype=np.int64)
                bits[real] = np.unpackbits(self._y[idx[real]], axis=1)
                ysum = np.where(real, bits.sum(axis=1), params.bits)  # pads: d = bits > tau
                ta = time.perf_counter()
                d = self._block_distance(rot_ntt, bits, ysum)
                tb = time.perf_counter()
                fs.append(self._threshold(d))
                t_test += time.perf_counter() - tb
                t_dist += tb - ta
            agg = self._product(fs)
            r = self._rng.integers(1, self._pub.p, slots)
            ev.multiply_plain_inplace(agg.ct, self._encode(r))
            agg.budget -= _MASK_COST
            if self._final_switch:
                ev.mod_switch_to_inplace(agg.ct, self._pub.ctx.last_parms_id())
            results.append(_to_bytes(agg.ct))
        self.last_stats = {
            "rotate_s": t_rot, "distance_s": t_dist, "test_s": t_test,
            "total_s": time.perf_counter() - t0, "blocks": self.blocks, "results": len(results),
        }
        return _frame(HammingKeyHolder.RTAG, results)


# ================================================================================== CKKS


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameter set for encrypted similarity (one list entry per slot)."""

    poly_degree: int = 8192
    coeff_bits: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40
    dim: int = 256
    baby: int = 16
    threshold: float = 0.9
    mask_log2: float = 8.0

    def __post_init__(self) -> None:
        if self.poly_degree not in (8192, 16384):
            raise ConfigError(f"poly_degree={self.poly_degree}: must be 8192 or 16384")
        if len(self.coeff_bits) != 4:
            raise ConfigError(f"coeff_bits={self.coeff_bits}: need 4 primes (depth 2 + special)")
        if self.dim <= 0 or (self.poly_degree // 2) % self.dim or self.baby <= 0 or self.dim % self.baby:
            raise ConfigError(f"dim={self.dim}, baby={self.baby}: dim must divide {self.poly_degree // 2}, baby dim")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold={self.threshold}: must be in (0, 1]")
        if not 0.0 <= self.mask_log2 <= 12.0:
            raise ConfigError(f"mask_log2={self.mask_log2}: must be in [0, 12]")

    @property
    def slots(self) -> int:
        return self.poly_degree // 2

    def blocks_for(self, n: int) -> int:
        return max(1, math.ceil(n / self.slots))


def unit_normalise(v: np.ndarray, what: str = "features") -> np.ndarray:
    """Rows scaled to unit L2 norm (cosine similarity = dot product); zero rows rejected."""
    v = np.asarray(v, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    if not np.all(np.isfinite(v)) or np.any(norms == 0):
        raise InputError(f"{what}: zero or non-finite feature vector")
    return v / norms


def _ckks_parms(params: CkksParams) -> seal.EncryptionParameters:
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_degree)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(params.poly_degree, list(params.coeff_bits)))
    return parms


def _ckks_steps(params: CkksParams) -> list[int]:
    return sorted({1, params.baby})


class _CkksPublic:
    TAG = b"E2HCKKpk"

    def __init__(self, bundle: bytes, params: CkksParams):
        parts = _unframe(self.TAG, bundle, "CKKS public bundle", 3)
        parms = _from_bytes(lambda: seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), None, parts[0], "CKKS parameters")
        expected = _ckks_parms(params)
        if (
            parms.scheme() != seal.SCHEME_TYPE.CKKS
            or parms.poly_modulus_degree() != expected.poly_modulus_degree()
            or [m.value() for m in parms.coeff_modulus()] != [m.value() for m in expected.coeff_modulus()]
        ):
            raise MalformedMessage("CKKS public bundle: parameters differ from the agreed parameter set")
        self.ctx = _context(expected)
        self.pk = _from_bytes(seal.PublicKey, self.ctx, parts[1], "CKKS public key")
        self.gk = _from_bytes(seal.GaloisKeys, self.ctx, parts[2], "CKKS Galois keys")
        for step in _ckks_steps(params):
            if not self.gk.has_key(_galois_elt(step, params.poly_degree)):
                raise MalformedMessage(f"CKKS Galois keys: no key for rotation step {step}")
        self.encoder = seal.CKKSEncoder(self.ctx)


class CkksKeyHolder(_KeyHolder):
    """Holds the CKKS secret key; encrypts the feature vector, reads the masked signs."""

    QTAG = b"E2HCKKq1"
    RTAG = b"E2HCKKr1"

    def __init__(self, params: CkksParams | None = None, seed: int | None = None):
        self.params = params or CkksParams()
        self._keygen(_ckks_parms(self.params), _ckks_steps(self.params), _CkksPublic.TAG, relin=False)
        self._encoder = seal.CKKSEncoder(self.ctx)

    def encrypt_query(self, v: np.ndarray) -> bytes:
        """Seeded secret-key encryption of the unit-normalised features, tiled over the slots."""
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.params.dim,):
            raise InputError(f"query features: expected shape ({self.params.dim},), got {v.shape}")
        u = unit_normalise(v, "query features")
        pt = seal.Plaintext()
        self._encoder.encode(np.tile(u, self.params.slots // self.params.dim).tolist(), 2.0 ** self.params.scale_bits, pt)
        return _frame(self.QTAG, [_to_bytes(self._encryptor.encrypt_symmetric(pt))])

    def decrypt_values(self, result: bytes) -> np.ndarray:
        """All decrypted slots, concatenated (masked r (s - theta), or s if unmasked)."""
        parts = _unframe(self.RTAG, result, "CKKS result")
        out = []
        for i, part in enumerate(parts):
            ct = _from_bytes(seal.Ciphertext, self.ctx, part, f"CKKS result ciphertext {i}")
            if ct.size() != 2:
                raise MalformedMessage(f"CKKS result ciphertext {i}: wrong size")
            pt = seal.Plaintext()
            self._decryptor.decrypt(ct, pt)
            out.append(np.asarray(self._encoder.decode_double(pt), dtype=np.float64))
        return np.concatenate(out)

    def decrypt_verdict(self, result: bytes) -> bool:
        """True iff some slot decrypts positive: some cosine similarity above the threshold."""
        return bool(np.any(self.decrypt_values(result) > 0))


class CkksQueryEncryptor:
    """Public-key CKKS query encryption for a device that does not hold the secret key."""

    def __init__(self, bundle: bytes, params: CkksParams | None = None):
        self.params = params or CkksParams()
        if isinstance(bundle, (bytes, bytearray)) and bytes(bundle[:8]) == _CkksPublic.TAG:
            bundle = device_bundle_of(bundle)
        parts = _unframe(DEVICE_TAG_CKKS, bundle, "CKKS device bundle", 2)
        parms = _from_bytes(lambda: seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), None, parts[0], "CKKS parameters")
        expected = _ckks_parms(self.params)
        if (
            parms.scheme() != seal.SCHEME_TYPE.CKKS
            or parms.poly_modulus_degree() != expected.poly_modulus_degree()
            or [m.value() for m in parms.coeff_modulus()] != [m.value() for m in expected.coeff_modulus()]
        ):
            raise MalformedMessage("CKKS device bundle: parameters differ from the agreed parameter set")
        self.ctx = _context(expected)
        pk = _from_bytes(seal.PublicKey, self.ctx, parts[1], "CKKS public key")
        self._encryptor = seal.Encryptor(self.ctx, pk)
        self._encoder = seal.CKKSEncoder(self.ctx)

    def encrypt_query(self, v: np.ndarray) -> bytes:
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.params.dim,):
            raise InputError(f"query features: expected shape ({self.params.dim},), got {v.shape}")
        u = unit_normalise(v, "query features")
        pt = seal.Plaintext()
        self._encoder.encode(np.tile(u, self.params.slots // self.params.dim).tolist(), 2.0 ** self.params.scale_bits, pt)
        ct = seal.Ciphertext()
        self._encryptor.encrypt(pt, ct)
        return _frame(CkksKeyHolder.QTAG, [_to_bytes(ct)])


class CkksMatcher:
    """Provider side of CKKS similarity: dot products by diagonals, then r (s - theta)."""

    def __init__(self, public_bundle: bytes, features: np.ndarray, params: CkksParams | None = None,
                 rng: np.random.Generator | None = None):
        self.params = params or CkksParams()
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.params.dim or f.shape[0] < 1:
            raise InputError(f"list features: expected shape (n>=1, {self.params.dim}), got {f.shape}")
        self._f = unit_normalise(f, "list features")
        self._pub = _CkksPublic(public_bundle, self.params)
        self._rng = rng if rng is not None else np.random.default_rng()
        self._ev = seal.Evaluator(self._pub.ctx)
        self.n = int(f.shape[0])
        self.blocks = self.params.blocks_for(self.n)
        self.last_perm: np.ndarray | None = None
        self.last_stats: dict = {}
        slots, dim, baby = self.params.slots, self.params.dim, self.params.baby
        s = np.arange(slots)
        self._src = [(s - baby * b) % slots for b in range(dim // baby)]
        self._col = [(s + a) % dim for a in range(baby)]

    @property
    def slot_utilisation(self) -> float:
        return self.n / (self.blocks * self.params.slots)

    def evaluate(self, query: bytes, *, mask: bool = True) -> bytes:
        """Result ciphertexts, one per 4096 entries. ``mask=False`` (measurement only) returns s."""
        t0 = time.perf_counter()
        (part,) = _unframe(CkksKeyHolder.QTAG, query, "CKKS query", 1)
        ctx, ev, enc, gk = self._pub.ctx, self._ev, self._pub.encoder, self._pub.gk
        q = _from_bytes(seal.Ciphertext, ctx, part, "CKKS query ciphertext")
        _check_query_ct(q, ctx, self.params.poly_degree, "CKKS query ciphertext")
        scale = 2.0 ** self.params.scale_bits
        if not q.is_ntt_form() or abs(math.log2(q.scale) - self.params.scale_bits) > 1e-9:
            raise MalformedMessage("CKKS query ciphertext: wrong form or scale")
        rot = [q]
        for _ in range(1, self.params.baby):
            c = seal.Ciphertext()
            ev.rotate_vector(rot[-1], 1, gk, c)
            rot.append(c)
        slots, n, pid = self.params.slots, self.n, q.parms_id()
        perm = self._rng.permutation(self.blocks * slots)
        self.last_perm = perm
        s_idx = np.arange(slots)
        results = []
        for blk in range(self.blocks):
            idx = perm[blk * slots : (blk + 1) * slots]
            real = idx < n
            w = np.zeros((slots, self.params.dim))
            w[real] = self._f[idx[real]]  # pad slots: weight 0, s = 0 < theta
            acc = None
            for b in reversed(range(len(self._src))):
                wb = w[self._src[b]]
                partial = None
                for a in range(self.params.baby):
                    pt = seal.Plaintext()
                    enc.encode(wb[s_idx, self._col[a]].tolist(), pid, scale, pt)
                    prod = seal.Ciphertext()
                    ev.multiply_plain(rot[a], pt, prod)
                    if partial is None:
                        partial = prod
                    else:
                        ev.add_inplace(partial, prod)
                if acc is None:
                    acc = partial
                else:
                    r = seal.Ciphertext()
                    ev.rotate_vector(acc, self.params.baby, gk, r)
                    ev.add(r, partial, acc)
            ev.rescale_to_next_inplace(acc)
            if mask:
                th = seal.Plaintext()
                enc.encode(-float(self.params.threshold), acc.parms_id(), acc.scale, th)
                ev.add_plain_inplace(acc, th)
                r = np.exp2(self._rng.uniform(0.0, self.params.mask_log2, slots))
                rp = seal.Plaintext()
                enc.encode(r.tolist(), acc.parms_id(), scale, rp)
                ev.multiply_plain_inplace(acc, rp)
                ev.rescale_to_next_inplace(acc)
            else:
                ev.mod_switch_to_next_inplace(acc)
            results.append(_to_bytes(acc))
        self.last_stats = {"total_s": time.perf_counter() - t0, "blocks": self.blocks}
        return _frame(CkksKeyHolder.RTAG, results)

    def slot_order(self) -> np.ndarray:
        """List index per decrypted slot of the last evaluation (-1 for padding): tests only."""
        perm = self.last_perm
        return np.where(perm < self.n, perm, -1)
