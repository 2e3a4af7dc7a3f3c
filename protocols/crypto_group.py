"""Prime-order group for the PSI schemes: ristretto255 (RFC 9496) through libsodium via ``rbcl``.

Why ristretto255: it is a prime-order group by construction (order
``L = 2^252 + 27742317777372353535851937790883648493``), so there is no cofactor to clear and no
subgroup check to pay on every multiplication; its decoder accepts exactly the canonical
encodings of group elements and nothing else. ``rbcl`` bundles libsodium and wraps its
``crypto_*_ristretto255`` functions (PyNaCl does not expose them).

- every :class:`Point` holds the canonical 32-byte encoding of a non-identity element;
- :meth:`Point.decode` is the only way bytes from another party become a point: it runs
  ``crypto_core_ristretto255_is_valid_point`` and raises :class:`MalformedMessage` on anything
  else (non-canonical, not an element, or the identity), so a blinding key can never be
  probed with a low-order or malformed point;
- :func:`hash_to_group` is RFC 9380's ``hash_to_ristretto255`` construction: 64 bytes from
  ``expand_message_xmd`` with SHA-512 under the caller's domain tag, then RFC 9496's element
  derivation (one-way map: two Elligator maps, added), libsodium's
  ``crypto_core_ristretto255_from_hash``.

Scalars are integers mod L as 32-byte little-endian strings. libsodium's
``crypto_scalarmult_ristretto255`` clears only bit 255 of the scalar (harmless for reduced
scalars, all below 2^253) and fails when the result is the identity. Measured here (CPU time,
2-core shared VM, mean of 2000): variable-base multiplication ~60-88 us, fixed-base ~18-21 us,
hash_to_group ~16 us, decode ~5 us (see the ``measure_*`` helpers; the range is machine load).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, Union

import numpy as np
import rbcl as _r

from e2eebench.protocols.errors import InputError, MalformedMessage

L: int = 2**252 + 27742317777372353535851937790883648493
"""Order of ristretto255 (and of the scalar field)."""
POINT_BYTES = 32
SCALAR_BYTES = 32
HASH_BYTES = 64  # input of the one-way map

RandomBytes = Callable[[int], bytes]
RandomSource = Union[RandomBytes, np.random.Generator, None]

_mul = _r.crypto_scalarmult_ristretto255
_mul_base = _r.crypto_scalarmult_ristretto255_base
_from_hash = _r.crypto_core_ristretto255_from_hash
_is_valid = _r.crypto_core_ristretto255_is_valid_point


def as_random_bytes(rng: RandomSource) -> RandomBytes:
    """``None`` -> the OS CSPRNG (protocol secrets); a numpy Generator or a callable -> seeded runs."""
    if rng is None:
        return os.urandom
    if isinstance(rng, np.random.Generator):
        return rng.bytes
    if callable(rng):
        return rng
    raise InputError(f"random source must be None, a numpy Generator or a callable, not {type(rng).__name__}")


@dataclass(frozen=True, slots=True)
class Scalar:
    """An element of Z_L; ``data`` is the canonical (reduced) 32-byte little-endian encoding."""

    data: bytes

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        return cls((value % L).to_bytes(SCALAR_BYTES, "little"))

    @classmethod
    def decode(cls, data: bytes) -> Scalar:
        """Strict wire decoding: exactly 32 bytes and already reduced mod L."""
        if not isinstance(data, (bytes, bytearray)) or len(data) != SCALAR_BYTES:
            raise MalformedMessage(f"scalar must be {SCALAR_BYTES} bytes, got {_describe(data)}")
        if int.from_bytes(data, "little") >= L:
            raise MalformedMessage("scalar encoding is not reduced mod L")
        return cls(bytes(data))

    @classmethod
    def random(cls, rng: RandomSource = None, *, nonzero: bool = True) -> Scalar:
        """Uniform scalar from 64 random bytes reduced mod L (bias < 2^-259).

        ``rng=None`` uses the OS CSPRNG; pass ``numpy.random.default_rng(seed)`` (or any
        ``Callable[[int], bytes]``) for a reproducible run. Zero is redrawn by default because
        a zero blinding key would map every point to the identity.
        """
        return cls(random_scalar_bytes(as_random_bytes(rng), nonzero=nonzero))

    def to_int(self) -> int:
        return int.from_bytes(self.data, "little")

    def encode(self) -> bytes:
        return self.data

    def __add__(self, other: Scalar) -> Scalar:
        return Scalar(_r.crypto_core_ristretto255_scalar_add(self.data, other.data))

    def __sub__(self, other: Scalar) -> Scalar:
        return Scalar(_r.crypto_core_ristretto255_scalar_sub(self.data, other.data))

    def __mul__(self, other: Scalar) -> Scalar:
        if not isinstance(other, Scalar):
            return NotImplemented
        return Scalar(_r.crypto_core_ristretto255_scalar_mul(self.data, other.data))

    def __neg__(self) -> Scalar:
        return Scalar(_r.crypto_core_ristretto255_scalar_negate(self.data))

    def neg(self) -> Scalar:
        return -self

    def invert(self) -> Scalar:
        if self.data == _ZERO:
            raise InputError("scalar 0 has no inverse mod L")
        return Scalar(_r.crypto_core_ristretto255_scalar_invert(self.data))

    def __repr__(self) -> str:  # never print secrets in full
        return f"Scalar({self.data[:4].hex()}…)"


_ZERO = bytes(SCALAR_BYTES)


def random_scalar_bytes(draw: RandomBytes, *, nonzero: bool = True) -> bytes:
    """The encoding of a uniform scalar (64 bytes reduced mod L), for hot loops that skip Scalar."""
    while True:  # Python's big-int reduction: ~1 us, a third of a ctypes round trip to libsodium
        s = (int.from_bytes(draw(64), "little") % L).to_bytes(SCALAR_BYTES, "little")
        if not nonzero or s != _ZERO:
            return s


_IDENTITY = bytes(POINT_BYTES)  # the identity's ristretto255 encoding


def _describe(data: object) -> str:
    if isinstance(data, (bytes, bytearray)):
        return f"{len(data)} bytes"
    return type(data).__name__


@dataclass(frozen=True, slots=True)
class Point:
    """A non-identity element of ristretto255, held as its canonical encoding.

    Construct from untrusted bytes only through :meth:`decode`; equality and hashing are on
    the encoding, which is unique for each element (RFC 9496 section 4.3.2).
    """

    data: bytes

    @classmethod
    def decode(cls, data: bytes) -> Point:
        if not isinstance(data, (bytes, bytearray)) or len(data) != POINT_BYTES:
            raise MalformedMessage(f"group element must be {POINT_BYTES} bytes, got {_describe(data)}")
        data = bytes(data)
        if data == _IDENTITY or not _is_valid(data):  # libsodium accepts the identity; we do not
            raise MalformedMessage("group element is not a canonical ristretto255 encoding (or is the identity)")
        return cls(data)

    def encode(self) -> bytes:
        return self.data

    def __mul__(self, scalar: Scalar) -> Point:
        if not isinstance(scalar, Scalar):
            return NotImplemented
        return Point(_scalarmult(scalar.data, self.data))

    __rmul__ = __mul__

    def __add__(self, other: Point) -> Point:
        return Point(_nonidentity(_r.crypto_core_ristretto255_add(self.data, other.data), "P + (-P)"))

    def __sub__(self, other: Point) -> Point:
        return Point(_nonidentity(_r.crypto_core_ristretto255_sub(self.data, other.data), "P - P"))

    def __repr__(self) -> str:
        return f"Point({self.data[:6].hex()}…)"


def _nonidentity(out: bytes, what: str) -> bytes:
    if out == _IDENTITY:
        raise InputError(f"point arithmetic gave the identity ({what})")
    return out


def _scalarmult(scalar: bytes, point: bytes) -> bytes:
    # libsodium fails (RuntimeError) when the point does not decode or the result is the
    # identity (scalar = 0 mod L): Point guarantees the former, so it is the latter here.
    try:
        return _mul(scalar, point)
    except RuntimeError as exc:
        raise InputError("scalar multiplication gave the identity (scalar is 0 mod L)") from exc


def base_mul(scalar: Scalar) -> Point:
    """``scalar * B`` for the ristretto255 generator B (RFC 9496 section 4.4)."""
    try:
        return Point(_mul_base(scalar.data))
    except RuntimeError as exc:
        raise InputError("base multiplication gave the identity (scalar is 0 mod L)") from exc


BASE = Point(bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"))
"""The ristretto255 generator B (RFC 9496 section 4.4)."""


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512: ``len_in_bytes`` uniform bytes from ``msg`` under ``dst``.

    ``dst`` must be 1..255 bytes (the RFC's oversize-DST rule is not needed here and not done).
    """
    if not isinstance(msg, (bytes, bytearray)) or not isinstance(dst, (bytes, bytearray)):
        raise InputError("expand_message_xmd takes bytes for both msg and dst")
    if not 1 <= len(dst) <= 255:
        raise InputError(f"domain tag must be 1..255 bytes, got {len(dst)}")
    ell = -(-len_in_bytes // 64)
    if not 1 <= len_in_bytes <= 65535 or ell > 255:
        raise InputError(f"len_in_bytes must be 1..{255 * 64}, got {len_in_bytes}")
    dst_prime = bytes(dst) + bytes([len(dst)])
    b0 = hashlib.sha512(_Z_PAD + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = [b]
    for i in range(2, ell + 1):
        b = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, b)) + bytes([i]) + dst_prime).digest()
        out.append(b)
    return b"".join(out)[:len_in_bytes]


_Z_PAD = bytes(128)  # SHA-512's input block size


def _h2g_raw(data: bytes, domain: bytes) -> bytes:
    # The identity has probability ~2^-252 from a random oracle; refusing it keeps Point's invariant.
    return _nonidentity(_from_hash(expand_message_xmd(data, domain, HASH_BYTES)), "hash_to_group")


def hash_to_group(data: bytes, domain: bytes) -> Point:
    """Hash bytes to a ristretto255 element under a domain tag (RFC 9380 ``hash_to_ristretto255``).

    ``expand_message_xmd(SHA-512, data, domain, 64)`` then ``crypto_core_ristretto255_from_hash``
    (RFC 9496 section 4.3.4: two Elligator maps of the 32-byte halves, added). The sum of two
    maps is indifferentiable from a random oracle (the RFC 9380 "_RO_" construction), which is
    what the PSI security proofs assume of H. The DST prime (tag || its length) makes
    (domain, data) -> input injective across domains.
    """
    return Point(_h2g_raw(data, domain))


def hash_many(items: Iterable[bytes], domain: bytes) -> list[Point]:
    return [Point(_h2g_raw(x, domain)) for x in items]


def hash_many_bytes(items: Iterable[bytes], domain: bytes) -> list[bytes]:
    """Like :func:`hash_many` but returns encodings: no Point objects for 10^6-entry lists."""
    return [_h2g_raw(x, domain) for x in items]


def mul_many(points: Sequence[Point], scalar: Scalar) -> list[Point]:
    s = scalar.data
    return [Point(_scalarmult(s, p.data)) for p in points]


def mul_many_bytes(encodings: Sequence[bytes], scalar: Scalar) -> list[bytes]:
    """Multiply encodings by one scalar without building Point objects.

    libsodium decodes every input inside the multiplication and fails on a non-canonical or
    invalid encoding (raised here as MalformedMessage), so this is safe on untrusted bytes.
    """
    s = scalar.data
    if s == _ZERO:
        raise InputError("scalar multiplication gave the identity (scalar is 0 mod L)")
    out: list[bytes] = []
    try:
        for e in encodings:
            out.append(_mul(s, e))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"entry {len(out)} is not a valid group element") from exc
    return out


# Raw byte-level operations for hot loops (the voucher path): no Point objects, no checks beyond
# libsodium's own. Inputs must be valid encodings; libsodium raises RuntimeError otherwise (and
# when a result would be the identity), which the caller turns into a typed error.
mul_bytes: Callable[[bytes, bytes], bytes] = _mul
"""``mul_bytes(scalar, point)``: variable-base multiplication on encodings."""
base_mul_bytes: Callable[[bytes], bytes] = _mul_base
"""``base_mul_bytes(scalar)``: fixed-base multiplication."""
add_bytes: Callable[[bytes, bytes], bytes] = _r.crypto_core_ristretto255_add
"""``add_bytes(p, q)``: addition on encodings (decodes both, encodes the sum: ~3 field inversions)."""


def hash_to_group_bytes(data: bytes, domain: bytes) -> bytes:
    """:func:`hash_to_group` returning the encoding."""
    return _h2g_raw(data, domain)


def measure_scalar_mult(n: int = 200) -> float:
    """Seconds of CPU per variable-base scalar multiplication (mean of ``n``), for cost models."""
    return _measure(lambda s, p: _mul(s, p), n)


def measure_base_mult(n: int = 200) -> float:
    """Seconds of CPU per fixed-base scalar multiplication (mean of ``n``)."""
    return _measure(lambda s, p: _mul_base(s), n)


def measure_hash_to_group(n: int = 200) -> float:
    """Seconds of CPU per :func:`hash_to_group` call on 32-byte inputs (mean of ``n``)."""
    return _measure(lambda s, p: _h2g_raw(s, b"measure"), n)


def _measure(op: Callable[[bytes, bytes], object], n: int) -> float:
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(0)
    scalars = [Scalar.random(rng).data for _ in range(n)]
    point = base_mul(Scalar.random(rng)).data
    t0 = time.process_time()
    for s in scalars:
        op(s, point)
    return (time.process_time() - t0) / n


__all__ = [
    "L", "POINT_BYTES", "SCALAR_BYTES", "HASH_BYTES", "RandomSource", "as_random_bytes", "Scalar", "Point",
    "BASE", "base_mul", "random_scalar_bytes", "mul_bytes", "base_mul_bytes", "add_bytes",
    "hash_to_group_bytes", "expand_message_xmd", "hash_to_group",
    "hash_many", "hash_many_bytes", "mul_many", "mul_many_bytes", "measure_scalar_mult",
    "measure_base_mult", "measure_hash_to_group",
]
