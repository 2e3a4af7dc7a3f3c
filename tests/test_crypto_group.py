"""ristretto255 (RFC 9496): published vectors, algebra, strict decoding, hashing to the group."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from e2eebench.protocols.crypto_group import (
    BASE, L, Point, Scalar, base_mul, expand_message_xmd, hash_many, hash_many_bytes, hash_to_group,
    measure_scalar_mult, mul_many, mul_many_bytes,
)
from e2eebench.protocols.errors import InputError, MalformedMessage

VECTORS = Path(__file__).parent / "vectors"
RFC9496 = json.loads((VECTORS / "ristretto255_rfc9496.json").read_text())
RFC9380 = json.loads((VECTORS / "expand_message_xmd_sha512_rfc9380.json").read_text())
MULTIPLES = [bytes.fromhex(h) for h in RFC9496["multiples_of_generator"]["encodings"]]
BAD = [bytes.fromhex(h) for group in RFC9496["bad_encodings"]["groups"].values() for h in group]


# --- published vectors -----------------------------------------------------------------------

def test_vector_file_is_complete() -> None:
    assert len(MULTIPLES) == 16 and MULTIPLES[0] == bytes(32)
    assert len(BAD) == 29
    assert len(RFC9496["one_way_map"]["vectors"]) == 7


@pytest.mark.parametrize("k", range(1, 16))
def test_multiples_of_generator_rfc9496_a1(k: int) -> None:
    assert base_mul(Scalar.from_int(k)).encode() == MULTIPLES[k]
    assert (BASE * Scalar.from_int(k)).encode() == MULTIPLES[k]
    assert Point.decode(MULTIPLES[k]).encode() == MULTIPLES[k]
    assert BASE.encode() == MULTIPLES[1]


def test_multiples_by_addition() -> None:
    acc = BASE
    for k in range(2, 16):
        acc = acc + BASE
        assert acc.encode() == MULTIPLES[k]


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.hex()[:12])
def test_bad_encodings_rfc9496_a2_are_rejected(bad: bytes) -> None:
    with pytest.raises(MalformedMessage):
        Point.decode(bad)
    with pytest.raises(MalformedMessage):
        mul_many_bytes([bad], Scalar.from_int(5))


@pytest.mark.parametrize("v", RFC9496["one_way_map"]["vectors"], ids=lambda v: v["output"][:12])
def test_one_way_map_rfc9496_a3(v: dict) -> None:
    import rbcl
    inp = bytes.fromhex(v["input"])
    assert hashlib.sha512(v["label"].encode()).digest() == inp  # how the RFC made its inputs
    assert rbcl.crypto_core_ristretto255_from_hash(inp).hex() == v["output"]


def test_one_way_map_masks_high_bits() -> None:
    import rbcl
    same = RFC9496["one_way_map_same_output"]
    outs = {rbcl.crypto_core_ristretto255_from_hash(bytes.fromhex(i)).hex() for i in same["inputs"]}
    assert outs == {same["output"]}


@pytest.mark.parametrize("v", RFC9380["vectors"], ids=lambda v: f"{v['msg'] or 'empty'}-{v['len_in_bytes']}")
def test_expand_message_xmd_sha512_rfc9380_k3(v: dict) -> None:
    out = expand_message_xmd(v["msg"].encode(), RFC9380["dst"].encode(), v["len_in_bytes"])
    assert out.hex() == v["uniform_bytes"]


def test_hash_to_group_is_xmd_then_one_way_map() -> None:
    import rbcl
    u = expand_message_xmd(b"abc", b"dom", 64)
    assert hash_to_group(b"abc", b"dom").encode() == rbcl.crypto_core_ristretto255_from_hash(u)
    with pytest.raises(InputError):
        hash_to_group(b"abc", b"")
    with pytest.raises(InputError):
        hash_to_group(b"abc", b"x" * 256)


# --- algebra --------------------------------------------------------------------------------

def test_order_is_L() -> None:
    with pytest.raises(InputError):
        base_mul(Scalar.from_int(L))
    # (L - 1) * B = -B, so (L - 1) * B + 2B = B
    assert base_mul(Scalar.from_int(L - 1)) + base_mul(Scalar.from_int(2)) == BASE
    with pytest.raises(InputError):
        base_mul(Scalar.from_int(L - 1)) + BASE


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


def test_large_scalars_are_not_clamped() -> None:
    # libsodium clears only bit 255; reduced scalars (< 2^253) must multiply exactly
    k = L - 12345
    assert base_mul(Scalar.from_int(k)) + base_mul(Scalar.from_int(12345 + 7)) == base_mul(Scalar.from_int(7))
    assert BASE * Scalar.from_int(k) == base_mul(Scalar.from_int(k))


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
    # the DST length byte: moving a byte between domain and data changes the point
    assert hash_to_group(b"cabc", b"do") != hash_to_group(b"abc", b"doc")
    items = [i.to_bytes(4, "big") for i in range(50)]
    pts = hash_many(items, b"dom")
    assert len(set(pts)) == 50
    assert [p.encode() for p in pts] == hash_many_bytes(items, b"dom")
    for q in pts:
        assert Point.decode(q.encode()) == q
        with pytest.raises(InputError):
            q * Scalar.from_int(L)  # order L: L * q is the identity


def test_batch_helpers_agree_with_single_ops() -> None:
    rng = np.random.default_rng(3)
    k = Scalar.random(rng)
    pts = hash_many([b"x", b"y", b"z"], b"d")
    assert mul_many(pts, k) == [p * k for p in pts]
    assert mul_many_bytes([p.encode() for p in pts], k) == [(p * k).encode() for p in pts]
    with pytest.raises(MalformedMessage):
        mul_many_bytes([pts[0].encode(), b"\x01" + bytes(31)], k)
    with pytest.raises(InputError):
        mul_many_bytes([pts[0].encode()], Scalar(bytes(32)))


def test_measure_scalar_mult_is_positive() -> None:
    t = measure_scalar_mult(20)
    assert 0 < t < 0.05


# --- strict decoding ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad",
    [
        bytes(32),  # the identity: valid encoding, but never a PSI Point
        b"",
        bytes(31),
        MULTIPLES[1] + b"\x00",  # 33 bytes
        bytes.fromhex("58" + "66" * 31),  # the ed25519 base point's encoding is not ristretto's
    ],
)
def test_decode_rejects_invalid(bad: bytes) -> None:
    with pytest.raises(MalformedMessage):
        Point.decode(bad)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(MalformedMessage):
        Point.decode("e2" * 32)  # type: ignore[arg-type]


def test_random_bytes_are_mostly_rejected() -> None:
    rng = np.random.default_rng(4)
    n = 400
    ok = sum(1 for _ in range(n) if _try_decode(rng.bytes(32)))
    # a canonical encoding is even (s >= 0) and must pass a square test and a sign test: ~1/8
    assert 10 < ok < n // 4


def _try_decode(b: bytes) -> bool:
    try:
        Point.decode(b)
        return True
    except MalformedMessage:
        return False
