"""Simulated Signal-like end-to-end encrypted messaging, with a slot for a scheme's payload.

Key agreement: the sender draws an ephemeral X25519 key ``E`` per session and combines
``DH(E, R)`` and ``DH(S, R)`` (S, R: the static identity keys of sender and recipient)
through HKDF-SHA256 into two chain keys, one per direction. Symmetric ratchet per
direction (Signal's KDF_CK): ``mk_n = HMAC(ck_n, 0x01)``, ``ck_{n+1} = HMAC(ck_n, 0x02)``;
each message key expands (HKDF) into an AES-256-GCM key and nonce, used once and then
deleted, so a replay fails and out-of-order delivery works within ``MAX_SKIP`` messages.

Envelope, version 1 (all integers big-endian)::

    off  size  field
    0    4     magic  b"E2EB"
    4    1     version = 1
    5    1     mode: 1 = end-to-end (recipient's key), 2 = transport (provider can read)
    6    1     suite: 1 = X25519 / HKDF-SHA256 / AES-256-GCM
    7    1     S = length of sender id
    8    S     sender id (UTF-8)
    .    1     R = length of recipient id
    .    R     recipient id (UTF-8)
    .    32    sender's session (ephemeral) X25519 public key
    .    4     message counter n
    .    4     P = detection payload length
    .    P     detection payload (the scheme's bytes, opaque here)
    .    4     C = ciphertext length
    .    C     AES-256-GCM ciphertext of the body, tag included (16 bytes)

The associated data of the AEAD is every byte before the ``C`` field: the header and the
detection payload. A relay that strips, swaps or edits the payload, or any header byte,
makes the recipient's decryption fail with :class:`AuthenticationFailed`.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from .crypto import (KEY_BYTES, NONCE_BYTES, TAG_BYTES, KeyPair, RandomBytes, aead_decrypt,
                     aead_encrypt, hkdf, hmac_sha256)
from .errors import MalformedMessage, ProtocolError, ReplayError

MAGIC = b"E2EB"
VERSION = 1
MODE_E2EE = 1
MODE_TRANSPORT = 2
SUITE_X25519_AESGCM = 1
MAX_SKIP = 1000
MAX_FIELD = 1 << 30


@dataclass(frozen=True)
class Envelope:
    mode: int
    sender: str
    recipient: str
    session_key: bytes
    counter: int
    payload: bytes
    ciphertext: bytes
    ad: bytes

    @property
    def size(self) -> int:
        return len(self.ad) + 4 + len(self.ciphertext)


def _header(mode: int, sender: str, recipient: str, session_key: bytes, counter: int,
            payload: bytes) -> bytes:
    s, r = sender.encode(), recipient.encode()
    if len(s) > 255 or len(r) > 255:
        raise ValueError("party ids are at most 255 bytes")
    return b"".join([MAGIC, bytes([VERSION, mode, SUITE_X25519_AESGCM, len(s)]), s,
                     bytes([len(r)]), r, session_key, struct.pack(">II", counter, len(payload)),
                     payload])


def parse_envelope(data: bytes) -> Envelope:
    """Parse without decrypting (what a relay does); any inconsistency is MalformedMessage."""
    data = bytes(data)
    try:
        if data[:4] != MAGIC:
            raise MalformedMessage("not an e2eebench envelope (bad magic)")
        version, mode, suite, slen = data[4], data[5], data[6], data[7]
        if version != VERSION:
            raise MalformedMessage(f"unsupported envelope version {version}")
        if mode not in (MODE_E2EE, MODE_TRANSPORT) or suite != SUITE_X25519_AESGCM:
            raise MalformedMessage(f"unknown envelope mode {mode} or suite {suite}")
        off = 8
        sender = data[off:off + slen].decode()
        off += slen
        rlen = data[off]
        off += 1
        recipient = data[off:off + rlen].decode()
        off += rlen
        session_key = data[off:off + 32]
        off += 32
        counter, plen = struct.unpack(">II", data[off:off + 8])
        off += 8
        if plen > MAX_FIELD or off + plen + 4 > len(data):
            raise MalformedMessage("detection payload length runs past the envelope")
        payload = data[off:off + plen]
        off += plen
        ad_end = off
        (clen,) = struct.unpack(">I", data[off:off + 4])
        off += 4
        if clen < TAG_BYTES or off + clen != len(data):
            raise MalformedMessage("ciphertext length does not match the envelope size")
        if len(session_key) != 32 or len(sender.encode()) != slen or len(recipient.encode()) != rlen:
            raise MalformedMessage("truncated envelope header")
    except (IndexError, struct.error, UnicodeDecodeError):
        raise MalformedMessage("truncated or garbled envelope") from None
    return Envelope(mode, sender, recipient, session_key, counter, payload, data[off:], data[:ad_end])


def _message_key(ck: bytes) -> tuple[bytes, bytes]:
    """Signal KDF_CK: returns (message key, next chain key)."""
    return hmac_sha256(ck, b"\x01"), hmac_sha256(ck, b"\x02")


def _expand(mk: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(mk, b"e2eebench message key v1", KEY_BYTES + NONCE_BYTES)
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


@dataclass
class Identity:
    """A device (or the provider, for transport encryption) with a static X25519 key."""

    name: str
    keypair: KeyPair

    @classmethod
    def generate(cls, name: str, random_bytes: RandomBytes = os.urandom) -> "Identity":
        return cls(name, KeyPair.generate(random_bytes))

    @property
    def public(self) -> bytes:
        return self.keypair.public_bytes


@dataclass
class _Chain:
    key: bytes
    n: int = 0
    skipped: dict[int, bytes] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)


class Session:
    """One direction-pair session between two identities (ratchet per direction)."""

    def __init__(self, me: Identity, peer: str, peer_public: bytes, session_key: bytes,
                 send_ck: bytes, recv_ck: bytes, mode: int):
        self.me, self.peer, self.peer_public = me, peer, peer_public
        self.session_key, self.mode = session_key, mode
        self._send = _Chain(send_ck)
        self._recv = _Chain(recv_ck)

    @staticmethod
    def _root(dh1: bytes, dh2: bytes, eph: bytes, s_pub: bytes, r_pub: bytes) -> tuple[bytes, bytes]:
        okm = hkdf(dh1 + dh2, b"e2eebench session v1", 64, salt=eph + s_pub + r_pub)
        return okm[:32], okm[32:]

    @classmethod
    def initiate(cls, me: Identity, peer: str, peer_public: bytes, *, mode: int = MODE_E2EE,
                 random_bytes: RandomBytes = os.urandom) -> "Session":
        eph = KeyPair.generate(random_bytes)
        a_to_b, b_to_a = cls._root(eph.exchange(peer_public), me.keypair.exchange(peer_public),
                                   eph.public_bytes, me.public, peer_public)
        return cls(me, peer, peer_public, eph.public_bytes, a_to_b, b_to_a, mode)

    @classmethod
    def respond(cls, me: Identity, peer: str, peer_public: bytes, session_key: bytes,
                mode: int = MODE_E2EE) -> "Session":
        try:
            dh1 = me.keypair.exchange(session_key)
        except ValueError:
            raise MalformedMessage("envelope carries an invalid session key") from None
        a_to_b, b_to_a = cls._root(dh1, me.keypair.exchange(peer_public), session_key,
                                   peer_public, me.public)
        return cls(me, peer, peer_public, session_key, b_to_a, a_to_b, mode)

    def encrypt(self, body: bytes, payload: bytes = b"") -> bytes:
        mk, self._send.key = _message_key(self._send.key)
        n = self._send.n
        self._send.n += 1
        header = _header(self.mode, self.me.name, self.peer, self.session_key, n, payload)
        key, nonce = _expand(mk)
        ct = aead_encrypt(key, nonce, body, header)
        return header + struct.pack(">I", len(ct)) + ct

    def decrypt(self, data: bytes | Envelope) -> tuple[bytes, bytes]:
        """Return (body, detection payload); raises on tampering, replay or a far-future counter."""
        env = data if isinstance(data, Envelope) else parse_envelope(data)
        if env.session_key != self.session_key or env.sender != self.peer or env.recipient != self.me.name:
            raise ProtocolError("envelope does not belong to this session")
        mk, commit = self._take_key(env.counter)
        key, nonce = _expand(mk)
        body = aead_decrypt(key, nonce, env.ciphertext, env.ad)
        commit()  # the ratchet moves only for messages that authenticate
        return body, env.payload

    def _take_key(self, n: int):
        ch = self._recv
        if n in ch.used:
            raise ReplayError(f"message {n} of this session was already received")
        if n < ch.n:
            if n in ch.skipped:
                def commit_old() -> None:
                    ch.skipped.pop(n, None)
                    ch.used.add(n)
                return ch.skipped[n], commit_old
            raise ReplayError(f"message {n} is older than the out-of-order window")
        if n - ch.n > MAX_SKIP:
            raise ProtocolError(f"message {n} is more than {MAX_SKIP} ahead of the ratchet")
        key, skipped = ch.key, {}
        for i in range(ch.n, n):
            mk, key = _message_key(key)
            skipped[i] = mk
        mk, key = _message_key(key)

        def commit() -> None:
            ch.skipped.update(skipped)
            ch.key, ch.n = key, n + 1
            ch.used.add(n)
            if len(ch.skipped) > MAX_SKIP:
                for k in sorted(ch.skipped)[: len(ch.skipped) - MAX_SKIP]:
                    del ch.skipped[k]
        return mk, commit


class Mailbox:
    """A device's sessions, keyed by peer and session key; answers the first message of a session."""

    def __init__(self, me: Identity, directory: dict[str, bytes]):
        self.me, self.directory = me, directory
        self.sessions: dict[tuple[str, bytes], Session] = {}
        self.outgoing: dict[str, Session] = {}

    def session_to(self, peer: str, *, mode: int = MODE_E2EE,
                   random_bytes: RandomBytes = os.urandom) -> Session:
        if peer not in self.outgoing:
            self.outgoing[peer] = Session.initiate(self.me, peer, self.directory[peer], mode=mode,
                                                   random_bytes=random_bytes)
        return self.outgoing[peer]

    def receive(self, data: bytes) -> tuple[str, bytes, bytes]:
        env = parse_envelope(data)
        if env.recipient != self.me.name:
            raise ProtocolError(f"envelope addressed to {env.recipient!r}, not {self.me.name!r}")
        if env.sender not in self.directory:
            raise ProtocolError(f"envelope from unknown sender {env.sender!r}")
        key = (env.sender, env.session_key)
        session = self.sessions.get(key)
        if session is None:
            session = Session.respond(self.me, env.sender, self.directory[env.sender],
                                      env.session_key, mode=env.mode)
        body, payload = session.decrypt(env)
        # a new session is kept only once its first message authenticates, so forged
        # envelopes with fresh session keys cannot fill the table
        self.sessions.setdefault(key, session)
        return env.sender, body, payload


# --- message bodies -------------------------------------------------------------------------

BODY_TEXT, BODY_IMAGE, BODY_IMAGE_TEXT = 1, 2, 3


@dataclass(frozen=True)
class MessageBody:
    """What the user sends: text, an encoded image (PNG bytes), or both."""

    text: str = ""
    image: bytes = b""

    def encode(self) -> bytes:
        t = self.text.encode()
        kind = BODY_IMAGE_TEXT if (t and self.image) else BODY_IMAGE if self.image else BODY_TEXT
        return bytes([kind]) + struct.pack(">I", len(t)) + t + struct.pack(">I", len(self.image)) + self.image

    @classmethod
    def decode(cls, data: bytes) -> "MessageBody":
        try:
            (tl,) = struct.unpack(">I", data[1:5])
            text = data[5:5 + tl].decode()
            (il,) = struct.unpack(">I", data[5 + tl:9 + tl])
            image = data[9 + tl:9 + tl + il]
            if 9 + tl + il != len(data) or data[0] not in (1, 2, 3):
                raise MalformedMessage("message body length fields do not match")
        except (struct.error, UnicodeDecodeError):
            raise MalformedMessage("garbled message body") from None
        return cls(text, image)
