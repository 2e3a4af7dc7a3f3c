"""Hashers: the PDQ hash is Meta's reference (pdqhash) on the RGB image; packed distances."""
from __future__ import annotations

import numpy as np
import pdqhash
import pytest

from e2eebench.clientside.hashing import HASHERS, get_hasher, hamming, hamming_matrix, hex_to_hash
from e2eebench.protocols.errors import InputError, UnknownNameError
from e2eebench.evaluation.data.corpora import get_corpus


@pytest.fixture(scope="module")
def photo():
    return get_corpus("bundled").items(1)[0].image


def test_pdq_equals_reference_bits(photo):
    bits, q = pdqhash.compute(np.asarray(photo.convert("RGB")))
    ref_hex = "".join(str(int(b)) for b in bits)
    ref_hex = "%064x" % int(ref_hex, 2)
    h = get_hasher("pdq")
    assert h.hash(photo).tobytes().hex() == ref_hex
    assert h.quality(photo) == q


@pytest.mark.parametrize("name", sorted(HASHERS))
def test_hash_shape_and_self_distance(name, photo):
    h = get_hasher(name)
    x = h.hash(photo)
    assert x.dtype == np.uint8 and x.shape == (h.bits // 8,)
    assert h.distance(x, x) == 0
    assert h.from_hex(x.tobytes().hex()).tobytes() == x.tobytes()


def test_hamming_matches_unpacked_count():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    ref = (np.unpackbits(a, axis=1)[:, None, :] != np.unpackbits(b, axis=1)[None, :, :]).sum(-1)
    assert (hamming_matrix(a, b, block=7) == ref).all()
    assert (hamming(a[:, None, :], b[None]) == ref).all()


def test_errors():
    with pytest.raises(UnknownNameError):
        get_hasher("nope")
    with pytest.raises(InputError):
        hex_to_hash("abcd", 256)
    with pytest.raises(InputError):
        get_hasher("pdq").check(np.zeros(8, np.uint8))
