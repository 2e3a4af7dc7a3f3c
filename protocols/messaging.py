"""Simulated end-to-end encrypted messaging: X3DH session setup, the Double Ratchet, and a
slot for a scheme's detection payload.

Sessions follow the Signal specifications: X3DH (Marlinspike & Perrin, 2016) and the Double
Ratchet (Perrin & Marlinspike, 2016), over ``cryptography``'s X25519, Ed25519, HKDF-SHA256,
HMAC-SHA256 and AES-256-GCM.

Why not the PyPI packages ``x3dh`` and ``doubleratchet`` (maintained for OMEMO): ``x3dh``
draws identity, prekey and ephemeral keys from ``secrets`` inside the library and needs the
XEdDSA C binding, so a run could not be reproduced from its seed; both packages are asyncio
only (an event loop per message on the measured path), and ``doubleratchet``'s recommended
AEAD is AES-CBC + HMAC with its own header model. The protocol below is short enough to
read against the specifications, and the tests check its security properties directly.

Keys. Each identity holds an X25519 identity key IK, an Ed25519 signing key SIG that signs its
prekeys (the X3DH specification signs with XEdDSA under IK itself, so one key is the identity;
here the signature alone would only show that *some* Ed25519 key signed, so the identity is
the pair (IK, SIG): it is what the directory lists, what a :class:`Mailbox` pins on first
contact, and what both parties put into the X3DH ``AD``), a signed prekey SPK and one-time
prekeys OPK. Its prekey bundle is published to the provider, which serves it with at most one
OPK and deletes the OPK it served (see :class:`PrekeyBundle`). A served bundle, or an initial
message, whose (IK, SIG) differs from the directory's or the pinned pair is an
:class:`IdentityMismatch`. Every public key in a bundle or envelope is checked at load: a
low-order X25519 key is a :class:`MalformedMessage`.

Prekey lifecycle. A device tops up its one-time prekeys when the provider reports fewer than
``LOW_PREKEYS`` left (:meth:`Identity.add_prekeys`), and draws a new signed prekey after
``SPK_ROTATE_SESSIONS`` sessions it answered (:meth:`Identity.rotate_spk`); the previous SPK's
private key is kept for one rotation (grace for initial messages already in flight) and then
deleted. For each SPK it keeps, a responder remembers the ephemeral keys EK_A of the initial
messages it accepted, so a replayed initial message (the only kind a spent one-time prekey
does not already stop) is a :class:`ReplayError` instead of a replacement of the live session.

X3DH (initiator A, responder B, ephemeral EK_A)::

    DH1 = DH(IK_A, SPK_B)  DH2 = DH(EK_A, IK_B)  DH3 = DH(EK_A, SPK_B)  DH4 = DH(EK_A, OPK_B)
    SK  = HKDF-SHA256(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4],
                      info = "e2eebench X3DH v2", 32 bytes)
    AD  = IK_A || SIG_A || IK_B || SIG_B     (128 bytes: both parties' identity pairs)

Double Ratchet: A starts with B's SPK as B's ratchet key; ``KDF_RK(rk, dh) = HKDF(salt=rk,
ikm=dh, info="e2eebench ratchet v2", 64) -> (rk', ck)``; ``KDF_CK(ck) = (HMAC(ck, 0x01),
HMAC(ck, 0x02))`` gives the message key and the next chain key; a message key expands
(HKDF, info "e2eebench message key v2") into an AES-256-GCM key and nonce, used once and
deleted. A receiver that sees a new ratchet key derives its receiving chain at once and
deletes its old ratchet private key; its next ratchet key pair is drawn when it next sends
(the specification draws it in the same step; drawing it later changes no derived value and
needs no randomness on receipt). Skipped message keys are kept for at most ``MAX_SKIP``
messages; a message whose key was used or dropped is a :class:`ReplayError`. State changes
only once a message authenticates.

Envelope, version 3 (all integers big-endian)::

    off  size  field
    0    4     magic  b"E2EB"
    4    1     version = 3
    5    1     mode: 1 = end-to-end (recipient's key), 2 = transport (provider can read)
    6    1     suite: 2 = X3DH(X25519, Ed25519) / Double Ratchet(HKDF-SHA256, HMAC-SHA256) / AES-256-GCM
    7    1     kind: 0 = ratchet message, 1 = prekey message (carries the X3DH header)
    8    1     S = length of sender id
    9    S     sender id (UTF-8)
    .    1     R = length of recipient id
    .    R     recipient id (UTF-8)
    -- kind 1 only (sent until the initiator hears back): --
    .    32    IK_A, the sender's X25519 identity key
    .    32    SIG_A, the sender's Ed25519 signing key (IK_A and SIG_A: its identity)
    .    32    EK_A, the sender's X3DH ephemeral key
    .    4     id of the signed prekey used
    .    4     id of the one-time prekey used (0xFFFFFFFF = none)
    -- always: --
    .    32    the sender's current ratchet public key
    .    4     PN, length of the sender's previous sending chain
    .    4     N, message number in the current sending chain
    .    4     P = detection payload length
    .    P     detection payload (the scheme's bytes, opaque here)
    .    4     C = ciphertext length
    .    C     AES-256-GCM ciphertext, tag included (16 bytes), of
                   2 bytes K || K bytes sealed for the recipient (scheme data) || message body

The AEAD's associated data is the X3DH ``AD`` (128 bytes, not sent) followed by every envelope
byte before the ``C`` field: header and detection payload. A relay that strips, swaps or
edits the payload or any header byte makes the recipient's decryption fail with
:class:`AuthenticationFailed`. A ratchet message with an empty payload and an empty body
is 4+1+1+1+1 + 1+S + 1+R + 32+4+4 + 4 + 4 + 16+2 = 76 + S + R bytes; a prekey message adds 104.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Union

from .crypto import (KEY_BYTES, NONCE_BYTES, TAG_BYTES, KeyPair, RandomBytes, SigningKey, aead_decrypt,
                     aead_encrypt, checked_public, hkdf, hmac_sha256, verify_signature)
from .errors import AuthenticationFailed, IdentityMismatch, MalformedMessage, ProtocolError, ReplayError

MAGIC = b"E2EB"
VERSION = 3
MODE_E2EE = 1
MODE_TRANSPORT = 2
SUITE_SIGNAL = 2
KIND_RATCHET, KIND_PREKEY = 0, 1
NO_OPK = 0xFFFFFFFF
MAX_SKIP = 1000
MAX_FIELD = 1 << 30
DEFAULT_PREKEYS = 8
LOW_PREKEYS = 3  # the provider asks a device for more one-time prekeys below this many
SPK_ROTATE_SESSIONS = 16  # a device draws a new signed prekey after answering this many sessions
PREKEY_HEADER_BYTES = 104


# --- identities and prekey bundles ------------------------------------------------------------

BUNDLE_MAGIC = b"E2PK"


def _spk_message(name: str, ik: bytes, spk_id: int, spk: bytes) -> bytes:
    return b"e2eebench signed prekey v2|" + name.encode() + b"|" + ik + struct.pack(">I", spk_id) + spk


@dataclass(frozen=True)
class PrekeyBundle:
    """What a device publishes, and (with at most one one-time prekey) what the provider serves.

    Bytes: ``b"E2PK" || 1 byte version (1) || 1 byte len || name || IK (32) || Ed25519 key (32)
    || spk_id (4) || SPK (32) || signature over SPK (64) || count (2) || (opk_id (4) || OPK (32))*``.
    Decoding checks the signature and rejects low-order keys, so a bundle that loads is usable.
    """

    name: str
    ik: bytes
    sig_key: bytes
    spk_id: int
    spk: bytes
    spk_sig: bytes
    opks: tuple[tuple[int, bytes], ...] = ()

    @property
    def identity(self) -> bytes:
        """The account's public identity: IK || Ed25519 signing key (64 bytes)."""
        return self.ik + self.sig_key

    def encode(self) -> bytes:
        n = self.name.encode()
        out = [BUNDLE_MAGIC, bytes([1, len(n)]), n, self.ik, self.sig_key, struct.pack(">I", self.spk_id),
               self.spk, self.spk_sig, struct.pack(">H", len(self.opks))]
        out += [struct.pack(">I", i) + k for i, k in self.opks]
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> "PrekeyBundle":
        data = bytes(data)
        try:
            if data[:4] != BUNDLE_MAGIC or data[4] != 1:
                raise MalformedMessage("not a version-1 prekey bundle")
            nl = data[5]
            name = data[6:6 + nl].decode()
            off = 6 + nl
            ik, sig_key = data[off:off + 32], data[off + 32:off + 64]
            (spk_id,) = struct.unpack(">I", data[off + 64:off + 68])
            spk, sig = data[off + 68:off + 100], data[off + 100:off + 164]
            (count,) = struct.unpack(">H", data[off + 164:off + 166])
            off += 166
            if len(data) != off + 36 * count or len(name.encode()) != nl:
                raise MalformedMessage("prekey bundle length does not match its count")
            opks = tuple((struct.unpack(">I", data[off + 36 * i:off + 36 * i + 4])[0],
                          checked_public(data[off + 36 * i + 4:off + 36 * i + 36], "one-time prekey"))
                         for i in range(count))
        except (IndexError, struct.error, UnicodeDecodeError):
            raise MalformedMessage("truncated or garbled prekey bundle") from None
        checked_public(ik, "identity key")
        checked_public(spk, "signed prekey")
        verify_signature(sig_key, sig, _spk_message(name, ik, spk_id, spk), "signed prekey signature")
        return cls(name, ik, sig_key, spk_id, spk, sig, opks)


@dataclass
class Identity:
    """A device (or the provider, for transport encryption): identity, signed and one-time prekeys."""

    name: str
    keypair: KeyPair
    signing: SigningKey
    spk_id: int
    spk: KeyPair
    spk_sig: bytes
    opks: dict[int, KeyPair] = field(default_factory=dict)
    old_spks: dict[int, KeyPair] = field(default_factory=dict)  # previous SPK, kept one rotation
    seen_eks: dict[int, set[bytes]] = field(default_factory=dict)  # per SPK id: EK_A of accepted initial messages
    answered: int = 0  # sessions answered since the SPK was drawn
    max_opk_id: int = -1  # highest one-time prekey id ever drawn (ids are never reused)

    @classmethod
    def generate(cls, name: str, random_bytes: RandomBytes = os.urandom,
                 n_prekeys: int = DEFAULT_PREKEYS) -> "Identity":
        ik, sig, spk = KeyPair.generate(random_bytes), SigningKey.generate(random_bytes), KeyPair.generate(random_bytes)
        signature = sig.sign(_spk_message(name, ik.public_bytes, 1, spk.public_bytes))
        return cls(name, ik, sig, 1, spk, signature, {i: KeyPair.generate(random_bytes) for i in range(n_prekeys)})

    @property
    def public(self) -> bytes:
        return self.keypair.public_bytes

    @property
    def identity(self) -> bytes:
        """The public identity the directory lists and peers pin: IK || Ed25519 signing key."""
        return self.keypair.public_bytes + self.signing.public_bytes

    def signed_prekey(self, spk_id: int) -> KeyPair | None:
        return self.spk if spk_id == self.spk_id else self.old_spks.get(spk_id)

    def add_prekeys(self, n: int, random_bytes: RandomBytes) -> bytes:
        """Draw ``n`` one-time prekeys with fresh ids; returns the bundle publishing only them."""
        start = max([*self.opks, self.max_opk_id]) + 1
        new = {start + i: KeyPair.generate(random_bytes) for i in range(n)}
        self.opks.update(new)
        self.max_opk_id = start + n - 1
        return self._bundle(sorted(new.items()))

    def rotate_spk(self, random_bytes: RandomBytes) -> bytes:
        """A new signed prekey; the previous one is kept for one rotation, the one before it (and the
        ephemeral keys remembered for it) deleted. Returns the bundle publishing the new SPK."""
        for old in list(self.old_spks):
            del self.old_spks[old]
            self.seen_eks.pop(old, None)
        self.old_spks[self.spk_id] = self.spk
        self.spk_id += 1
        self.spk = KeyPair.generate(random_bytes)
        self.spk_sig = self.signing.sign(_spk_message(self.name, self.public, self.spk_id, self.spk.public_bytes))
        self.answered = 0
        return self._bundle([])

    def _bundle(self, opks: list[tuple[int, KeyPair]]) -> bytes:
        return PrekeyBundle(self.name, self.public, self.signing.public_bytes, self.spk_id,
                            self.spk.public_bytes, self.spk_sig,
                            tuple((i, k.public_bytes) for i, k in opks)).encode()

    def bundle(self) -> bytes:
        """The bundle this identity publishes (every one-time prekey it holds)."""
        return self._bundle(sorted(self.opks.items()))


# --- envelope -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrekeyHeader:
    ik: bytes
    sig_key: bytes
    ek: bytes
    spk_id: int
    opk_id: int

    @property
    def identity(self) -> bytes:
        return self.ik + self.sig_key

    def encode(self) -> bytes:
        return self.ik + self.sig_key + self.ek + struct.pack(">II", self.spk_id, self.opk_id)


@dataclass(frozen=True)
class Envelope:
    mode: int
    sender: str
    recipient: str
    prekey: PrekeyHeader | None
    dh: bytes
    pn: int
    counter: int
    payload: bytes
    ciphertext: bytes
    ad: bytes

    @property
    def size(self) -> int:
        return len(self.ad) + 4 + len(self.ciphertext)


def _header(mode: int, sender: str, recipient: str, prekey: PrekeyHeader | None, dh: bytes, pn: int,
            n: int, payload: bytes) -> bytes:
    s, r = sender.encode(), recipient.encode()
    if len(s) > 255 or len(r) > 255:
        raise ValueError("party ids are at most 255 bytes")
    kind = KIND_PREKEY if prekey is not None else KIND_RATCHET
    return b"".join([MAGIC, bytes([VERSION, mode, SUITE_SIGNAL, kind, len(s)]), s, bytes([len(r)]), r,
                     prekey.encode() if prekey is not None else b"", dh,
                     struct.pack(">III", pn, n, len(payload)), payload])


def parse_envelope(data: bytes) -> Envelope:
    """Parse without decrypting (what a relay does); any inconsistency is MalformedMessage."""
    data = bytes(data)
    try:
        if data[:4] != MAGIC:
            raise MalformedMessage("not an e2eebench envelope (bad magic)")
        version, mode, suite, kind, slen = data[4], data[5], data[6], data[7], data[8]
        if version != VERSION:
            raise MalformedMessage(f"unsupported envelope version {version}")
        if mode not in (MODE_E2EE, MODE_TRANSPORT) or suite != SUITE_SIGNAL or kind not in (KIND_RATCHET, KIND_PREKEY):
            raise MalformedMessage(f"unknown envelope mode {mode}, suite {suite} or kind {kind}")
        off = 9
        sender = data[off:off + slen].decode()
        off += slen
        rlen = data[off]
        off += 1
        recipient = data[off:off + rlen].decode()
        off += rlen
        if len(sender.encode()) != slen or len(recipient.encode()) != rlen:
            raise MalformedMessage("truncated envelope header")
        prekey = None
        if kind == KIND_PREKEY:
            ik, sig_key, ek = data[off:off + 32], data[off + 32:off + 64], data[off + 64:off + 96]
            spk_id, opk_id = struct.unpack(">II", data[off + 96:off + 104])
            if len(sig_key) != 32:
                raise MalformedMessage("truncated envelope header")
            prekey = PrekeyHeader(checked_public(ik, "sender identity key"), sig_key,
                                  checked_public(ek, "X3DH ephemeral key"), spk_id, opk_id)
            off += PREKEY_HEADER_BYTES
        dh = checked_public(data[off:off + 32], "ratchet key")
        off += 32
        pn, counter, plen = struct.unpack(">III", data[off:off + 12])
        off += 12
        if plen > MAX_FIELD or off + plen + 4 > len(data):
            raise MalformedMessage("detection payload length runs past the envelope")
        payload = data[off:off + plen]
        off += plen
        ad_end = off
        (clen,) = struct.unpack(">I", data[off:off + 4])
        off += 4
        if clen < TAG_BYTES + 2 or off + clen != len(data):
            raise MalformedMessage("ciphertext length does not match the envelope size")
    except (IndexError, struct.error, UnicodeDecodeError):
        raise MalformedMessage("truncated or garbled envelope") from None
    return Envelope(mode, sender, recipient, prekey, dh, pn, counter, payload, data[off:], data[:ad_end])


# --- X3DH and the Double Ratchet -----------------------------------------------------------------

def _x3dh_kdf(dhs: list[bytes]) -> bytes:
    return hkdf(b"\xff" * 32 + b"".join(dhs), b"e2eebench X3DH v2", 32, salt=bytes(32))


def _kdf_rk(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(dh_out, b"e2eebench ratchet v2", 64, salt=rk)
    return okm[:32], okm[32:]


def _kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """Signal KDF_CK: returns (message key, next chain key)."""
    return hmac_sha256(ck, b"\x01"), hmac_sha256(ck, b"\x02")


def _expand(mk: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(mk, b"e2eebench message key v2", KEY_BYTES + NONCE_BYTES)
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


@dataclass
class RatchetState:
    """The Double Ratchet state of one party in one session (the specification's names)."""

    rk: bytes
    dhs: KeyPair | None  # own ratchet key pair; None: a fresh one is drawn at the next send
    dhr: bytes | None
    cks: bytes | None
    ckr: bytes | None
    ns: int = 0
    nr: int = 0
    pn: int = 0
    skipped: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    old_dhr: frozenset[bytes] = frozenset()

    def copy(self) -> "RatchetState":
        return replace(self, skipped=dict(self.skipped))


@dataclass(frozen=True)
class Delivered:
    """What a recipient's app has once an envelope opens (and the provider's stamp, if any)."""

    sender: str
    body: bytes
    payload: bytes
    sealed: bytes
    envelope: bytes
    stamp: bytes = b""


@dataclass(frozen=True)
class Delivery:
    """What the provider delivers to a recipient: the envelope, and the stamp a scheme put on it at
    relay time (a franking tag; empty for most schemes), sent as its own transfer."""

    envelope: bytes
    stamp: bytes = b""
    prekeys_left: int | None = None  # set when the provider asks the recipient for more one-time prekeys


class Session:
    """One party's end of a two-party session: X3DH, then the Double Ratchet."""

    def __init__(self, me: Identity, peer: str, peer_identity: bytes, ad: bytes, state: RatchetState, mode: int,
                 prekey: PrekeyHeader | None, initiator_ek: bytes, random_bytes: RandomBytes | None):
        self.me, self.peer, self.peer_identity, self.ad, self.mode = me, peer, peer_identity, ad, mode
        self.state = state
        self._pending_prekey = prekey  # the X3DH header rides on every message until the peer answers
        self.initiator_ek = initiator_ek
        self._random = random_bytes

    @classmethod
    def initiate(cls, me: Identity, bundle: PrekeyBundle, *, mode: int = MODE_E2EE,
                 random_bytes: RandomBytes = os.urandom) -> "Session":
        ek = KeyPair.generate(random_bytes)
        dhs = [me.keypair.exchange(bundle.spk), ek.exchange(bundle.ik), ek.exchange(bundle.spk)]
        opk_id = NO_OPK
        if bundle.opks:
            opk_id, opk = bundle.opks[0]
            dhs.append(ek.exchange(opk))
        sk = _x3dh_kdf(dhs)
        ratchet = KeyPair.generate(random_bytes)
        rk, cks = _kdf_rk(sk, ratchet.exchange(bundle.spk))
        state = RatchetState(rk, ratchet, bundle.spk, cks, None)
        header = PrekeyHeader(me.public, me.signing.public_bytes, ek.public_bytes, bundle.spk_id, opk_id)
        return cls(me, bundle.name, bundle.identity, me.identity + bundle.identity, state, mode, header,
                   ek.public_bytes, random_bytes)

    @classmethod
    def respond(cls, me: Identity, env: Envelope) -> tuple["Session", int]:
        """The responder's half of X3DH from a prekey message; returns the session and the one-time
        prekey id to delete once the message authenticates."""
        h = env.prekey
        if h is None:
            raise ProtocolError(f"no session with {env.sender!r} and the envelope is not a prekey message")
        spk = me.signed_prekey(h.spk_id)
        if spk is None:
            raise ProtocolError(f"signed prekey {h.spk_id} is not current (or was deleted after rotation)")
        if h.ek in me.seen_eks.get(h.spk_id, ()):
            raise ReplayError("this initial message was already accepted (replayed X3DH ephemeral key)")
        dhs = [spk.exchange(h.ik), me.keypair.exchange(h.ek), spk.exchange(h.ek)]
        if h.opk_id != NO_OPK:
            opk = me.opks.get(h.opk_id)
            if opk is None:
                raise ReplayError(f"one-time prekey {h.opk_id} was already used or never existed")
            dhs.append(opk.exchange(h.ek))
        sk = _x3dh_kdf(dhs)
        state = RatchetState(sk, spk, None, None, None)
        return (cls(me, env.sender, h.identity, h.identity + me.identity, state, env.mode, None, h.ek, None),
                h.opk_id)

    # -- sending ---------------------------------------------------------------------------------
    def encrypt(self, body: bytes, payload: bytes = b"", sealed: bytes = b"",
                random_bytes: RandomBytes | None = None) -> bytes:
        if len(sealed) > 0xFFFF:
            raise ValueError("sealed scheme data is at most 65535 bytes")
        st = self.state
        if st.cks is None:  # first send after a receiving ratchet step: a fresh ratchet key pair
            rand = random_bytes or self._random
            if rand is None:
                raise ValueError("a DH ratchet step needs a random source (pass random_bytes)")
            st.dhs = KeyPair.generate(rand)
            st.rk, st.cks = _kdf_rk(st.rk, st.dhs.exchange(st.dhr))
        mk, st.cks = _kdf_ck(st.cks)
        header = _header(self.mode, self.me.name, self.peer, self._pending_prekey, st.dhs.public_bytes,
                         st.pn, st.ns, payload)
        st.ns += 1
        key, nonce = _expand(mk)
        ct = aead_encrypt(key, nonce, struct.pack(">H", len(sealed)) + sealed + body, self.ad + header)
        return header + struct.pack(">I", len(ct)) + ct

    # -- receiving -------------------------------------------------------------------------------
    def decrypt(self, env: Envelope) -> tuple[bytes, bytes]:
        """Return (plaintext body, sealed scheme data); raises on tampering, replay or a far-future counter."""
        if env.sender != self.peer or env.recipient != self.me.name:
            raise ProtocolError("envelope does not belong to this session")
        st = self.state.copy()
        mk = st.skipped.pop((env.dh, env.counter), None)
        if mk is None:
            if env.dh != st.dhr:
                if env.dh in st.old_dhr:
                    raise ReplayError(f"message {env.counter} of a past ratchet chain was already received or dropped")
                if st.dhs is None:
                    raise AuthenticationFailed("a new ratchet key before this party has sent on the last one")
                self._skip(st, env.pn)
                st.old_dhr = st.old_dhr | ({st.dhr} if st.dhr else set())
                st.pn, st.ns, st.nr, st.dhr = st.ns, 0, 0, env.dh
                st.rk, st.ckr = _kdf_rk(st.rk, st.dhs.exchange(env.dh))
                st.dhs, st.cks = None, None  # the old ratchet private key is deleted here
            if env.counter < st.nr:
                raise ReplayError(f"message {env.counter} was already received or is outside the skipped-key window")
            self._skip(st, env.counter)
            mk, st.ckr = _kdf_ck(st.ckr)
            st.nr += 1
        key, nonce = _expand(mk)
        plain = aead_decrypt(key, nonce, env.ciphertext, self.ad + env.ad)
        (k,) = struct.unpack(">H", plain[:2])
        if 2 + k > len(plain):
            raise MalformedMessage("sealed scheme data runs past the plaintext")
        self.state = st  # the ratchet moves only for messages that authenticate
        self._pending_prekey = None  # the peer has answered: no more X3DH header
        return plain[2 + k:], plain[2:2 + k]

    @staticmethod
    def _skip(st: RatchetState, until: int) -> None:
        if st.ckr is None:
            return
        if until - st.nr > MAX_SKIP:
            raise ProtocolError(f"message {until} is more than {MAX_SKIP} ahead of the ratchet")
        while st.nr < until:
            mk, st.ckr = _kdf_ck(st.ckr)
            st.skipped[(st.dhr, st.nr)] = mk
            st.nr += 1
        while len(st.skipped) > MAX_SKIP:
            del st.skipped[next(iter(st.skipped))]


PrekeySource = Union[Callable[[str], bytes], Mapping[str, bytes]]


class Mailbox:
    """A device's sessions, one per peer. New sessions start from the peer's prekey bundle, which
    ``prekeys`` gives: a function that fetches it from the provider (counted on the channel by
    the caller) or a fixed mapping of published bundles.

    A peer's identity (IK || signing key) is checked wherever it appears, in a served bundle and
    in an initial message: against ``directory`` (name -> identity) when one is given, which
    models users who compared safety numbers or a key-transparency log, and is then
    authoritative (a name it lacks is refused); otherwise against the identity pinned on first
    contact (trust on first use, as Signal clients do until the users compare safety numbers).
    A mismatch is an :class:`IdentityMismatch`."""

    def __init__(self, me: Identity, prekeys: PrekeySource, directory: Mapping[str, bytes] | None = None):
        self.me = me
        self._prekeys = prekeys
        self.directory = directory
        self.pinned: dict[str, bytes] = {}
        self.sessions: dict[str, Session] = {}

    def _check_identity(self, peer: str, identity: bytes) -> None:
        if self.directory is not None:
            expected = self.directory.get(peer)
            if expected is None:
                raise IdentityMismatch(f"{peer!r} is not in the identity directory")
        else:
            expected = self.pinned.get(peer)
        if expected is not None and expected != identity:
            raise IdentityMismatch(f"{peer!r} presents an identity (identity key, signing key) other than "
                                   + ("the directory's" if self.directory is not None else "the pinned one"))

    def _bundle(self, peer: str) -> PrekeyBundle:
        data = self._prekeys(peer) if callable(self._prekeys) else self._prekeys.get(peer)
        if data is None:
            raise ProtocolError(f"no prekey bundle for {peer!r}")
        bundle = PrekeyBundle.decode(data)
        if bundle.name != peer:
            raise AuthenticationFailed(f"prekey bundle names {bundle.name!r}, not {peer!r}")
        self._check_identity(peer, bundle.identity)
        return bundle

    def session_to(self, peer: str, *, mode: int = MODE_E2EE, random_bytes: RandomBytes = os.urandom) -> Session:
        """The session with ``peer`` (started by X3DH if there is none); its next ratchet key pair
        is drawn from ``random_bytes``."""
        if peer not in self.sessions:
            bundle = self._bundle(peer)
            self.sessions[peer] = Session.initiate(self.me, bundle, mode=mode, random_bytes=random_bytes)
            self.pinned.setdefault(peer, bundle.identity)
        session = self.sessions[peer]
        session._random = random_bytes
        return session

    def open(self, data: bytes, stamp: bytes = b"") -> Delivered:
        env = parse_envelope(data)
        if env.recipient != self.me.name:
            raise ProtocolError(f"envelope addressed to {env.recipient!r}, not {self.me.name!r}")
        session = self.sessions.get(env.sender)
        h = env.prekey
        opk_id, fresh = NO_OPK, False
        if h is not None and (session is None or session.initiator_ek != h.ek):
            self._check_identity(env.sender, h.identity)
            session, opk_id = Session.respond(self.me, env)
            fresh = True
        elif session is None:
            raise ProtocolError(f"no session with {env.sender!r} and the envelope is not a prekey message")
        body, sealed = session.decrypt(env)
        # a new session is kept (its one-time prekey deleted, its ephemeral key remembered, the
        # sender's identity pinned) only once its first message authenticates, so forged prekey
        # messages leave no state behind
        self.sessions[env.sender] = session
        if fresh:
            self.me.opks.pop(opk_id, None)
            self.me.seen_eks.setdefault(h.spk_id, set()).add(h.ek)
            self.me.answered += 1
            self.pinned.setdefault(env.sender, h.identity)
        return Delivered(env.sender, body, env.payload, sealed, bytes(data), stamp)

    def receive(self, data: bytes) -> tuple[str, bytes, bytes]:
        d = self.open(data)
        return d.sender, d.body, d.payload


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
