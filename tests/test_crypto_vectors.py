"""Published test vectors for the primitives and for the HPKE suite every sealed value uses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from e2eebench.protocols import crypto
from e2eebench.protocols.errors import AuthenticationFailed, MalformedMessage

VEC = Path(__file__).parent / "vectors"
RFC9180 = json.loads((VEC / "rfc9180_x25519_sha256_aes128gcm.json").read_text())["vectors"]
PRIM = json.loads((VEC / "primitives.json").read_text())
h = bytes.fromhex


def test_x25519_rfc7748():
    for v in PRIM["x25519"]["scalar_mult"]:
        k = X25519PrivateKey.from_private_bytes(h(v["scalar"]))
        assert k.exchange(X25519PublicKey.from_public_bytes(h(v["u"]))) == h(v["out"])
    d = PRIM["x25519"]["dh"]
    a, b = crypto.KeyPair.from_private(h(d["alice_private"])), crypto.KeyPair.from_private(h(d["bob_private"]))
    assert a.public_bytes == h(d["alice_public"]) and b.public_bytes == h(d["bob_public"])
    assert a.exchange(b.public_bytes) == b.exchange(a.public_bytes) == h(d["shared"])


def test_hkdf_rfc5869():
    v = PRIM["hkdf_sha256"]
    assert crypto.hkdf_extract(h(v["salt"]), h(v["ikm"])) == h(v["prk"])
    assert crypto.hkdf_expand(h(v["prk"]), h(v["info"]), v["length"]) == h(v["okm"])
    assert crypto.hkdf(h(v["ikm"]), h(v["info"]), v["length"], salt=h(v["salt"])) == h(v["okm"])


def test_aes_gcm_published_cases():
    for v in PRIM["aes_gcm"]["cases"]:
        out = AESGCM(h(v["key"])).encrypt(h(v["iv"]), h(v["pt"]), h(v["aad"]) or None)
        assert out == h(v["ct"]) + h(v["tag"])
        if len(h(v["key"])) == 32:
            assert crypto.aead_decrypt(h(v["key"]), h(v["iv"]), out, h(v["aad"])) == h(v["pt"])


@pytest.mark.parametrize("v", RFC9180, ids=[v["section"] for v in RFC9180])
def test_hpke_rfc9180_vectors(v):
    eph, rec = crypto.derive_keypair(h(v["ikmE"])), crypto.derive_keypair(h(v["ikmR"]))
    assert (eph.private_bytes, eph.public_bytes) == (h(v["skEm"]), h(v["pkEm"]))
    assert (rec.private_bytes, rec.public_bytes) == (h(v["skRm"]), h(v["pkRm"]))
    sender = crypto.derive_keypair(h(v["ikmS"])) if "ikmS" in v else None
    if sender is not None:
        assert (sender.private_bytes, sender.public_bytes) == (h(v["skSm"]), h(v["pkSm"]))
    shared, enc = crypto.encap(rec.public_bytes, eph, sender)
    assert enc == h(v["enc"]) and shared == h(v["shared_secret"])
    assert crypto.decap(enc, rec, sender.public_bytes if sender else None) == shared
    ctx = crypto.key_schedule(v["mode"], shared, h(v["info"]))
    assert ctx.key_schedule_context == h(v["key_schedule_context"])
    assert ctx.secret == h(v["secret"])
    assert (ctx.key, ctx.base_nonce, ctx.exporter_secret) == (h(v["key"]), h(v["base_nonce"]), h(v["exporter_secret"]))
    for e in v["encryptions"]:
        assert ctx.nonce(e["seq"]) == h(e["nonce"])
        assert AESGCM(ctx.key).encrypt(h(e["nonce"]), h(e["pt"]), h(e["aad"])) == h(e["ct"])
    # the single-shot API is sequence number 0
    e0 = v["encryptions"][0]
    blob = crypto.seal(rec.public_bytes, h(e0["pt"]), info=h(v["info"]), ad=h(e0["aad"]),
                       random_bytes=lambda n: h(v["ikmE"]), sender=sender)
    assert blob == h(v["enc"]) + h(e0["ct"])
    assert crypto.open_sealed(rec, blob, info=h(v["info"]), ad=h(e0["aad"]),
                              sender_public=sender.public_bytes if sender else None) == h(e0["pt"])


def test_hpke_interoperates_with_cryptography_hpke():
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    rec = crypto.derive_keypair(b"\x07" * 32)
    ours = crypto.seal(rec.public_bytes, b"sealed by e2eebench", info=b"interop", random_bytes=lambda n: b"\x09" * n)
    assert suite.decrypt(ours, rec.private, info=b"interop") == b"sealed by e2eebench"
    theirs = suite.encrypt(b"sealed by cryptography", rec.private.public_key(), info=b"interop")
    assert crypto.open_sealed(rec, theirs, info=b"interop") == b"sealed by cryptography"


def test_hpke_auth_mode_binds_the_sender_and_base_mode_the_binding():
    rec, snd, other = (crypto.derive_keypair(bytes([i]) * 32) for i in (1, 2, 3))
    blob = crypto.seal(rec.public_bytes, b"x", info=b"i", ad=b"acct\x00m1", sender=snd,
                       random_bytes=lambda n: b"\x05" * n)
    assert crypto.open_sealed(rec, blob, info=b"i", ad=b"acct\x00m1", sender_public=snd.public_bytes) == b"x"
    for kwargs in ({"sender_public": other.public_bytes}, {"sender_public": None},
                   {"sender_public": snd.public_bytes, "ad": b"acct\x00m2"},
                   {"sender_public": snd.public_bytes, "info": b"j"}):
        args = {"info": b"i", "ad": b"acct\x00m1"} | kwargs
        with pytest.raises(AuthenticationFailed):
            crypto.open_sealed(rec, blob, **args)


LOW_ORDER = [bytes(32), (1).to_bytes(32, "little"),
             h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]


@pytest.mark.parametrize("point", LOW_ORDER, ids=["zero", "one", "order-8"])
def test_low_order_public_keys_are_rejected(point):
    with pytest.raises(MalformedMessage):
        crypto.checked_public(point)
    with pytest.raises(MalformedMessage):
        crypto.seal(point, b"x", info=b"i", random_bytes=lambda n: b"\x01" * n)
    assert crypto.checked_public(crypto.derive_keypair(b"\x02" * 32).public_bytes)
