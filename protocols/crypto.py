"""Symmetric and public-key building blocks over ``cryptography`` (OpenSSL).

Small and safe: HKDF-SHA256, AES-256-GCM with typed failures, and an HPKE-style
sealed box (X25519 + HKDF-SHA256 + AES-256-GCM) for values a device seals to the
provider or to a third party. Randomness comes from a caller-supplied source so a
run is reproducible by seed; pass ``os.urandom`` for real secrecy.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import AuthenticationFailed, MalformedMessage

RandomBytes = Callable[[int], bytes]
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
X25519_BYTES = 32


def hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes = b"") -> bytes:
    return AESGCM(key).encrypt(nonce, plaintext, ad)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes = b"") -> bytes:
    if len(ciphertext) < TAG_BYTES:
        raise MalformedMessage(f"ciphertext of {len(ciphertext)} bytes is shorter than its tag")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        raise AuthenticationFailed("AEAD tag does not verify (tampered, forged or wrong key)") from None


@dataclass(frozen=True)
class KeyPair:
    private: X25519PrivateKey
    public_bytes: bytes

    @classmethod
    def generate(cls, random_bytes: RandomBytes = os.urandom) -> "KeyPair":
        sk = X25519PrivateKey.from_private_bytes(random_bytes(X25519_BYTES))
        pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(sk, pk)

    def exchange(self, peer_public: bytes) -> bytes:
        return self.private.exchange(load_public(peer_public))


def load_public(data: bytes) -> X25519PublicKey:
    if len(data) != X25519_BYTES:
        raise MalformedMessage(f"X25519 public key must be 32 bytes, got {len(data)}")
    return X25519PublicKey.from_public_bytes(data)


def seal(recipient_public: bytes, plaintext: bytes, *, info: bytes, ad: bytes = b"",
         random_bytes: RandomBytes = os.urandom) -> bytes:
    """HPKE-style base mode: enc (32) || AES-256-GCM(plaintext) under HKDF(dh, enc||pk||info)."""
    eph = KeyPair.generate(random_bytes)
    dh = eph.exchange(recipient_public)
    okm = hkdf(dh, b"e2eebench seal v1|" + info, KEY_BYTES + NONCE_BYTES,
               salt=eph.public_bytes + recipient_public)
    return eph.public_bytes + aead_encrypt(okm[:KEY_BYTES], okm[KEY_BYTES:], plaintext, ad)


def open_sealed(recipient: KeyPair, blob: bytes, *, info: bytes, ad: bytes = b"") -> bytes:
    if len(blob) < X25519_BYTES + TAG_BYTES:
        raise MalformedMessage(f"sealed box of {len(blob)} bytes is too short")
    enc, ct = blob[:X25519_BYTES], blob[X25519_BYTES:]
    try:
        dh = recipient.exchange(enc)
    except ValueError:
        raise MalformedMessage("sealed box carries an invalid ephemeral key") from None
    okm = hkdf(dh, b"e2eebench seal v1|" + info, KEY_BYTES + NONCE_BYTES,
               salt=enc + recipient.public_bytes)
    return aead_decrypt(okm[:KEY_BYTES], okm[KEY_BYTES:], ct, ad)


SEAL_OVERHEAD = X25519_BYTES + TAG_BYTES
