"""Symmetric and public-key building blocks over ``cryptography`` (OpenSSL).

HKDF-SHA256, HMAC-SHA256, AES-256-GCM with typed failures, X25519 key pairs, Ed25519
signatures, and HPKE (RFC 9180) for every value a device seals to the provider or a third
party.

HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (kem 0x0020, kdf 0x0001,
aead 0x0001), single-shot, Base mode (0x00) or Auth mode (0x02, the sender's static key is
bound into the KEM). A sealed value is ``enc (32 bytes) || AES-128-GCM ciphertext (tag 16)``;
``info`` names the scheme's use and ``ad`` is the AEAD's associated data (the binding to
account and message). Why the key schedule is written out here rather than called from
``cryptography.hazmat.primitives.hpke``: that API (cryptography 48) offers only Base mode and
draws the ephemeral key from the operating system, so it can neither authenticate a sender
(Auth mode) nor reproduce a run from its seed. The code below is RFC 9180 sections 4.1, 5.1
and 5.2 over ``cryptography``'s X25519, HMAC, HKDF-Expand and AES-GCM; the ephemeral key comes
from the RFC's own ``DeriveKeyPair`` applied to seeded bytes. tests/test_crypto_vectors.py
checks it against RFC 9180 Appendix A.1 (Base and Auth) and against ``cryptography``'s own
HPKE in both directions.

Randomness comes from a caller-supplied source so a run is reproducible by seed; pass
``os.urandom`` for real secrecy.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .errors import AuthenticationFailed, MalformedMessage

RandomBytes = Callable[[int], bytes]
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
X25519_BYTES = 32
SIG_BYTES = 64
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac_sha256(salt or bytes(32), ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


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


# --- X25519 -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyPair:
    private: X25519PrivateKey
    public_bytes: bytes

    @classmethod
    def from_private(cls, sk: bytes) -> "KeyPair":
        key = X25519PrivateKey.from_private_bytes(sk)
        return cls(key, key.public_key().public_bytes(*_RAW))

    @classmethod
    def generate(cls, random_bytes: RandomBytes = os.urandom) -> "KeyPair":
        return cls.from_private(random_bytes(X25519_BYTES))

    @property
    def private_bytes(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())

    def exchange(self, peer_public: bytes) -> bytes:
        try:
            return self.private.exchange(load_public(peer_public))
        except ValueError:  # OpenSSL refuses an all-zero shared secret: a low-order point
            raise MalformedMessage("X25519 public key is of low order (all-zero shared secret)") from None


def load_public(data: bytes) -> X25519PublicKey:
    if len(data) != X25519_BYTES:
        raise MalformedMessage(f"X25519 public key must be 32 bytes, got {len(data)}")
    return X25519PublicKey.from_public_bytes(data)


_ORDER_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def checked_public(data: bytes, what: str = "X25519 public key") -> bytes:
    """A public key read from a bundle: right length and not of low order, or MalformedMessage.

    X25519 clamps every scalar to a multiple of the cofactor 8, so ``k * P`` is all-zero exactly
    when ``P`` lies in the small subgroup; one exchange with a fixed scalar decides it."""
    try:
        _ORDER_PROBE.exchange(load_public(data))
    except ValueError:
        raise MalformedMessage(f"{what} is of low order (rejected at load)") from None
    return bytes(data)


# --- Ed25519 ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public_bytes: bytes

    @classmethod
    def generate(cls, random_bytes: RandomBytes = os.urandom) -> "SigningKey":
        key = Ed25519PrivateKey.from_private_bytes(random_bytes(32))
        return cls(key, key.public_key().public_bytes(*_RAW))

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)  # Ed25519 is deterministic (RFC 8032): no randomness


def verify_signature(public: bytes, signature: bytes, data: bytes, what: str = "signature") -> None:
    if len(public) != 32 or len(signature) != SIG_BYTES:
        raise MalformedMessage(f"{what}: wrong key or signature length")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except InvalidSignature:
        raise AuthenticationFailed(f"{what} does not verify") from None


# --- HPKE, RFC 9180 ---------------------------------------------------------------------------

KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0001
MODE_BASE, MODE_AUTH = 0x00, 0x02
HPKE_NK, HPKE_NN = 16, 12
_KEM_SUITE = b"KEM" + struct.pack(">H", KEM_ID)
_HPKE_SUITE = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)


def _labeled_extract(salt: bytes, label: bytes, ikm: bytes, suite: bytes) -> bytes:
    return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(prk: bytes, label: bytes, info: bytes, length: int, suite: bytes) -> bytes:
    return hkdf_expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


def derive_keypair(ikm: bytes) -> KeyPair:
    """RFC 9180 section 7.1.3, DeriveKeyPair for X25519."""
    prk = _labeled_extract(b"", b"dkp_prk", ikm, _KEM_SUITE)
    return KeyPair.from_private(_labeled_expand(prk, b"sk", b"", 32, _KEM_SUITE))


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    prk = _labeled_extract(b"", b"eae_prk", dh, _KEM_SUITE)
    return _labeled_expand(prk, b"shared_secret", kem_context, 32, _KEM_SUITE)


def encap(pk_r: bytes, eph: KeyPair, sender: KeyPair | None = None) -> tuple[bytes, bytes]:
    """(shared_secret, enc): Encap, or AuthEncap when ``sender`` is given."""
    dh = eph.exchange(pk_r)
    ctx = eph.public_bytes + pk_r
    if sender is not None:
        dh += sender.exchange(pk_r)
        ctx += sender.public_bytes
    return _extract_and_expand(dh, ctx), eph.public_bytes


def decap(enc: bytes, recipient: KeyPair, sender_public: bytes | None = None) -> bytes:
    dh = recipient.exchange(enc)
    ctx = enc + recipient.public_bytes
    if sender_public is not None:
        dh += recipient.exchange(sender_public)
        ctx += sender_public
    return _extract_and_expand(dh, ctx)


@dataclass(frozen=True)
class HpkeContext:
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes
    key_schedule_context: bytes
    secret: bytes

    def nonce(self, seq: int) -> bytes:
        n = int.from_bytes(self.base_nonce, "big") ^ seq
        return n.to_bytes(HPKE_NN, "big")


def key_schedule(mode: int, shared_secret: bytes, info: bytes) -> HpkeContext:
    """RFC 9180 section 5.1 without a PSK (Base and Auth modes)."""
    psk_id_hash = _labeled_extract(b"", b"psk_id_hash", b"", _HPKE_SUITE)
    info_hash = _labeled_extract(b"", b"info_hash", info, _HPKE_SUITE)
    ksc = bytes([mode]) + psk_id_hash + info_hash
    secret = _labeled_extract(shared_secret, b"secret", b"", _HPKE_SUITE)
    return HpkeContext(_labeled_expand(secret, b"key", ksc, HPKE_NK, _HPKE_SUITE),
                       _labeled_expand(secret, b"base_nonce", ksc, HPKE_NN, _HPKE_SUITE),
                       _labeled_expand(secret, b"exp", ksc, 32, _HPKE_SUITE), ksc, secret)


def seal(recipient_public: bytes, plaintext: bytes, *, info: bytes, ad: bytes = b"",
         random_bytes: RandomBytes = os.urandom, sender: KeyPair | None = None) -> bytes:
    """HPKE single-shot seal (Base mode, or Auth mode with ``sender``): ``enc || ct``."""
    eph = derive_keypair(random_bytes(X25519_BYTES))
    shared, enc = encap(recipient_public, eph, sender)
    ctx = key_schedule(MODE_AUTH if sender is not None else MODE_BASE, shared, info)
    return enc + AESGCM(ctx.key).encrypt(ctx.nonce(0), plaintext, ad)


def open_sealed(recipient: KeyPair, blob: bytes, *, info: bytes, ad: bytes = b"",
                sender_public: bytes | None = None) -> bytes:
    """HPKE single-shot open; a wrong key, info, ad or sender is AuthenticationFailed."""
    if len(blob) < X25519_BYTES + TAG_BYTES:
        raise MalformedMessage(f"sealed box of {len(blob)} bytes is too short")
    enc, ct = blob[:X25519_BYTES], blob[X25519_BYTES:]
    shared = decap(enc, recipient, sender_public)
    ctx = key_schedule(MODE_AUTH if sender_public is not None else MODE_BASE, shared, info)
    try:
        return AESGCM(ctx.key).decrypt(ctx.nonce(0), ct, ad)
    except InvalidTag:
        raise AuthenticationFailed("sealed value does not open (tampered, forged or wrong key)") from None


SEAL_OVERHEAD = X25519_BYTES + TAG_BYTES
