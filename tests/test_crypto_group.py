"""The prime-order group: algebra, strict decoding, and agreement with published/independent values."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from nacl import bindings as nb

from e2eebench.protocols.crypto_group import (
    BASE, L, Point, Scalar, base_mul, hash_many, hash_many_bytes, hash_to_group,
    measure_scalar_mult, mul_many, mul_many_bytes,
)
from e2eebench.protocols.errors import InputError, MalformedMessage

# --- an independent, slow, pure-Python edwards25519 (RFC 8032 section 5.1) -----------------
P_FIELD = 2**255 - 19
D = -121665 * pow(121666, -1, P_FIELD) % P_FIELD
SQRT_M1 = pow(2, (P_FIELD - 1) // 4, P_FIELD)


def _ref_add(p, q):
    x1, y1 = p
    x2, y2 = q
    t = D * x1 * x2 * y1 * y2 % P_FIELD
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, -1, P_FIELD) % P_FIELD
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, -1, P_FIELD) % P_FIELD
    return x3, y3


def _ref_mul(k, p):
    acc, add = (0, 1), p
    while k:
        if k & 1:
            acc = _ref_add(acc, add)
        add = _ref_add(add, add)
        k >>= 1
    return acc


def _ref_encode(p):
    x, y = p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _ref_decode(b):
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    assert y < P_FIELD
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P_FIELD) % P_FIELD
    x = pow(x2, (P_FIELD + 3) // 8, P_FIELD)
    if (x * x - x2) % P_FIELD:
        x = x * SQRT_M1 % P_FIELD
    assert (x * x - x2) % P_FIELD == 0, "not on curve"
    if (x & 1) != sign:
        x = P_FIELD - x
    return x, y


REF_B = _ref_decode(bytes.fromhex("58" + "66" * 31))


# --- published vectors -----------------------------------------------------------------------

def test_base_point_matches_rfc8032() -> None:
    assert base_mul(Scalar.from_int(1)).encode() == bytes.fromhex("58" + "66" * 31) == BASE.encode()
    # the RFC's base point has y = 4/5 (mod p)
    assert REF_B[1] == 4 * pow(5, -1, P_FIELD) % P_FIELD


def test_rfc8032_test1_public_key() -> None:
    # RFC 8032 section 7.1, TEST 1: public key = clamp(SHA-512(sk)[:32]) * B
    sk = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    a = bytearray(hashlib.sha512(sk).digest()[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    assert base_mul(Scalar.from_int(int.from_bytes(a, "little"))).encode() == pk


@pytest.mark.parametrize("k", [2, 3, 7, 8, 2**200 + 12345, L - 1])
def test_small_multiples_match_independent_arithmetic(k: int) -> None:
    expected = _ref_encode(_ref_mul(k, REF_B))
    assert base_mul(Scalar.from_int(k)).encode() == expected
    assert (BASE * Scalar.from_int(k)).encode() == expected


def test_order_is_L() -> None:
    assert _ref_mul(L, REF_B) == (0, 1)
    with pytest.raises(InputError):
        base_mul(Scalar.from_int(L))


# --- algebra --------------------------------------------------------------------------------

def test_blinding_commutes_and_inverts() -> None:
    rng = np.random.default_rng(1)
    P = hash_to_group(b"item", b"test")
    a, b = Scalar.random(rng), Scalar.random(rng)
    assert a * (b * P) == b * (a * P) == (a * b) * P
    assert ((a * b) * P) * (a * b).invert() == P
    assert (P * a) * a.invert() == P
    assert (a + b).to_int() == (a.to_int() + b.to_int()) % L
    assert (a - b).to_int() == (a.to_int() - b.to_int()) % L
    assert (-a).to_int() == (-a.to_int()) % L
    assert (a * b).to_int() == a.to_int() * b.to_int() % L


def test_point_addition_matches_scalar_arithmetic() -> None:
    rng = np.random.default_rng(2)
    a, b = Scalar.random(rng), Scalar.random(rng)
    assert base_mul(a) + base_mul(b) == base_mul(a + b)
    assert base_mul(a) - base_mul(b) == base_mul(a - b)
    with pytest.raises(InputError):
        base_mul(a) - base_mul(a)
    with pytest.raises(InputError):
        Scalar.from_int(0).invert()
    with pytest.raises(InputError):
        base_mul(a) * Scalar.from_int(0)


def test_scalar_random_is_seeded_and_os_random_differs() -> None:
    assert Scalar.random(np.random.default_rng(5)) == Scalar.random(np.random.default_rng(5))
    assert Scalar.random() != Scalar.random()
    assert Scalar.random(lambda n: bytes(n - 1) + b"\x07").to_int() == (7 << 504) % L
    with pytest.raises(MalformedMessage):
        Scalar.decode(L.to_bytes(32, "little"))
    assert Scalar.decode((L - 1).to_bytes(32, "little")).to_int() == L - 1


def test_hash_to_group_deterministic_domain_separated_valid() -> None:
    p = hash_to_group(b"abc", b"dom")
    assert p == hash_to_group(b"abc", b"dom")
    assert p != hash_to_group(b"abc", b"dom2")
    assert p != hash_to_group(b"abd", b"dom")
    # the length prefix: moving a byte between domain and data changes the point
    assert hash_to_group(b"cabc", b"do") != hash_to_group(b"abc", b"doc")
    items = [i.to_bytes(4, "big") for i in range(50)]
    pts = hash_many(items, b"dom")
    assert len(set(pts)) == 50
    assert [p.encode() for p in pts] == hash_many_bytes(items, b"dom")
    for q in pts:
        assert nb.crypto_core_ed25519_is_valid_point(q.encode())
        assert Point.decode(q.encode()) == q
        assert _ref_mul(L, _ref_decode(q.encode())) == (0, 1)  # in the order-L subgroup


def test_batch_helpers_agree_with_single_ops() -> None:
    rng = np.random.default_rng(3)
    k = Scalar.random(rng)
    pts = hash_many([b"x", b"y", b"z"], b"d")
    assert mul_many(pts, k) == [p * k for p in pts]
    assert mul_many_bytes([p.encode() for p in pts], k) == [(p * k).encode() for p in pts]
    with pytest.raises(MalformedMessage):
        mul_many_bytes([pts[0].encode(), b"\x01" + bytes(31)], k)


def test_measure_scalar_mult_is_positive() -> None:
    t = measure_scalar_mult(20)
    assert 0 < t < 0.05


# --- strict decoding ------------------------------------------------------------------------

ORDER2 = (P_FIELD - 1).to_bytes(32, "little")  # (0, -1), order 2


@pytest.mark.parametrize(
    "bad",
    [
        b"\x01" + bytes(31),  # identity
        b"\x01" + bytes(30) + b"\x80",  # identity with the sign bit: non-canonical
        bytes(32),  # (sqrt(-1), 0): order 4
        ORDER2,
        (P_FIELD + 1).to_bytes(32, "little"),  # y >= p: non-canonical encoding of y = 1
        b"\xff" * 31 + b"\x7f",  # y = 2^255 - 1 >= p
        b"",
        bytes(31),
        b"\x58" + b"\x66" * 31 + b"\x00",  # 33 bytes
    ],
)
def test_decode_rejects_invalid(bad: bytes) -> None:
    with pytest.raises(MalformedMessage):
        Point.decode(bad)


def test_decode_rejects_non_bytes_and_mixed_order() -> None:
    with pytest.raises(MalformedMessage):
        Point.decode("58" * 32)  # type: ignore[arg-type]
    # B + T (T of order 2) is on the curve but outside the prime-order subgroup
    mixed = nb.crypto_core_ed25519_add(BASE.encode(), ORDER2)
    assert mixed == _ref_encode(_ref_add(REF_B, _ref_decode(ORDER2)))
    with pytest.raises(MalformedMessage):
        Point.decode(mixed)
    # non-canonical encoding of a valid point: only y < 19 can be written as y + p; find x for y = 5
    # (y=5 may not be on the curve; then the canonical one is rejected too, which is also correct)
    with pytest.raises(MalformedMessage):
        Point.decode((P_FIELD + 5).to_bytes(32, "little"))


def test_random_bytes_are_mostly_rejected() -> None:
    rng = np.random.default_rng(4)
    n = 400
    ok = sum(1 for _ in range(n) if _try_decode(rng.bytes(32)))
    # about half of y values are on the curve, and 1/8 of those lie in the subgroup: ~1/16
    assert ok < n // 4


def _try_decode(b: bytes) -> bool:
    try:
        Point.decode(b)
        return True
    except MalformedMessage:
        return False
