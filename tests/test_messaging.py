"""The simulated E2EE messenger: X3DH, the Double Ratchet and the envelope.

Security properties shown here (docs/architecture.md lists them with these tests): bit-exact
delivery and binding of the detection payload, forward secrecy, post-compromise recovery,
out-of-order delivery inside the skipped-key window, replay rejection, the signed-prekey check,
low-order keys rejected at load, and the envelope's byte layout (known-answer test).
"""
from __future__ import annotations

import copy
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from e2eebench.protocols import messaging as msg
from e2eebench.protocols.crypto import KeyPair, SigningKey, aead_decrypt, hkdf
from e2eebench.protocols.errors import (AuthenticationFailed, IdentityMismatch, MalformedMessage, ProtocolError,
                                        ReplayError)
from e2eebench.protocols.messaging import (MAX_SKIP, Identity, Mailbox, MessageBody, PrekeyBundle,
                                           parse_envelope)
from e2eebench.server.relay import PrekeyStore

VECTORS = Path(__file__).parent / "vectors"


def pair(seed=0):
    rng = np.random.default_rng(seed)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes)
    d = {"alice": a.bundle(), "bob": b.bundle()}
    return Mailbox(a, d), Mailbox(b, d), rng


def test_round_trip_and_payload_delivered():
    A, B, rng = pair()
    env = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"hello", b"PAYLOAD", b"sealed")
    d = B.open(env)
    assert (d.sender, d.body, d.payload, d.sealed) == ("alice", b"hello", b"PAYLOAD", b"sealed")
    assert parse_envelope(env).payload == b"PAYLOAD"


def test_body_is_not_in_the_envelope_in_clear():
    A, B, rng = pair()
    secret = b"a very recognisable plaintext body" * 4
    env = A.session_to("bob", random_bytes=rng.bytes).encrypt(secret)
    assert secret[:20] not in env


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.binary(min_size=0, max_size=80), st.data())
def test_any_flipped_byte_is_rejected(body, payload, data):
    A, B, rng = pair(1)
    env = A.session_to("bob", random_bytes=rng.bytes).encrypt(body, payload)
    i = data.draw(st.integers(0, len(env) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(env)
    bad[i] ^= 1 << bit
    with pytest.raises(ProtocolError):
        B.receive(bytes(bad))


def _reassemble(env, ad):
    return ad + len(env.ciphertext).to_bytes(4, "big") + env.ciphertext


def test_swapped_or_stripped_payload_is_rejected():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    e1 = parse_envelope(s.encrypt(b"one", b"payload-one"))
    e2 = parse_envelope(s.encrypt(b"two", b"payload-TWO"))
    with pytest.raises(AuthenticationFailed):  # envelope 1 with envelope 2's payload, as a dishonest relay would
        B.receive(_reassemble(e1, e1.ad.replace(b"payload-one", b"payload-TWO")))
    stripped = e1.ad[: -len(e1.payload) - 4] + (0).to_bytes(4, "big")
    with pytest.raises(AuthenticationFailed):
        B.receive(_reassemble(e1, stripped))
    assert B.receive(_reassemble(e2, e2.ad))[1] == b"two"


def test_out_of_order_across_ratchet_steps_and_replay_rejected():
    A, B, rng = pair()
    envs = [A.session_to("bob", random_bytes=rng.bytes).encrypt(f"a{i}".encode()) for i in range(12)]
    order = np.random.default_rng(5).permutation(12)
    for i in order[:6]:
        assert B.receive(envs[i])[1] == f"a{i}".encode()
    # bob answers (a DH ratchet step), alice answers again (another); the held-back six still open
    A.receive(B.session_to("alice", random_bytes=rng.bytes).encrypt(b"b0"))
    later = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"a-new")
    assert B.receive(later)[1] == b"a-new"
    for i in order[6:]:
        assert B.receive(envs[i])[1] == f"a{i}".encode()
    for i in (order[0], order[-1]):
        with pytest.raises(ReplayError):
            B.receive(envs[i])
    with pytest.raises(ReplayError):
        B.receive(later)


def test_too_far_ahead_rejected():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    B.receive(s.encrypt(b"first"))
    for _ in range(MAX_SKIP + 2):
        env = s.encrypt(b"x")
    with pytest.raises(ProtocolError):
        B.receive(env)


def test_prekey_header_until_answered_then_ratchet_messages():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    e1, e2 = s.encrypt(b"1"), s.encrypt(b"2")
    assert parse_envelope(e1).prekey is not None and parse_envelope(e2).prekey is not None
    B.receive(e1)
    B.receive(e2)  # same X3DH header: the existing session, not a second X3DH
    assert len(B.sessions) == 1
    A.receive(B.session_to("alice", random_bytes=rng.bytes).encrypt(b"r"))
    e3 = s.encrypt(b"3")
    assert parse_envelope(e3).prekey is None
    assert len(e1) - len(e3) == msg.PREKEY_HEADER_BYTES
    assert B.receive(e3)[1] == b"3"


def test_one_time_prekey_is_used_once():
    A, B, rng = pair()
    opk_before = set(B.me.opks)
    B.receive(A.session_to("bob", random_bytes=rng.bytes).encrypt(b"x"))
    assert len(opk_before - set(B.me.opks)) == 1
    # a second initiator handed the same (static) bundle names the deleted prekey: refused
    rng2 = np.random.default_rng(9)
    c = Identity.generate("carol", rng2.bytes)
    C = Mailbox(c, {"bob": PrekeyBundle.decode(A._prekeys["bob"]).encode()})
    with pytest.raises(ReplayError):
        B.receive(C.session_to("bob", random_bytes=rng2.bytes).encrypt(b"y"))


def test_wrong_recipient_and_garbage():
    A, B, rng = pair()
    env = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"x")
    with pytest.raises(ProtocolError):
        A.receive(env)
    for junk in (b"", b"E2EB", b"garbage" * 10, env[:-1]):
        with pytest.raises(ProtocolError):
            B.receive(junk)


def test_message_body_codec():
    b = MessageBody("caption", b"\x89PNG fake")
    assert MessageBody.decode(b.encode()) == b
    with pytest.raises(MalformedMessage):
        MessageBody.decode(b.encode()[:-1])


def test_forged_first_message_does_not_open_a_session():
    A, B, rng = pair()
    opks = dict(B.me.opks)
    env = bytearray(A.session_to("bob", random_bytes=rng.bytes).encrypt(b"x"))
    env[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        B.receive(bytes(env))
    assert B.sessions == {} and B.me.opks == opks
    env[-1] ^= 1
    assert B.receive(bytes(env))[1] == b"x"
    assert len(B.sessions) == 1


# --- prekey bundles ----------------------------------------------------------------------------

def test_bundle_signature_and_low_order_keys_checked_at_load():
    rng = np.random.default_rng(3)
    b = PrekeyBundle.decode(Identity.generate("bob", rng.bytes).bundle())
    assert PrekeyBundle.decode(b.encode()) == b
    other = KeyPair.generate(rng.bytes).public_bytes
    with pytest.raises(AuthenticationFailed):  # a provider substituting the signed prekey
        PrekeyBundle.decode(PrekeyBundle(b.name, b.ik, b.sig_key, b.spk_id, other, b.spk_sig, b.opks).encode())
    with pytest.raises(AuthenticationFailed):  # or the name it is signed for
        PrekeyBundle.decode(PrekeyBundle("mallory", b.ik, b.sig_key, b.spk_id, b.spk, b.spk_sig).encode())
    zero = bytes(32)
    for bad in (PrekeyBundle(b.name, zero, b.sig_key, b.spk_id, b.spk, b.spk_sig),
                PrekeyBundle(b.name, b.ik, b.sig_key, b.spk_id, zero, b.spk_sig),
                PrekeyBundle(b.name, b.ik, b.sig_key, b.spk_id, b.spk, b.spk_sig, ((7, zero),))):
        with pytest.raises(MalformedMessage):
            PrekeyBundle.decode(bad.encode())
    for junk in (b"", b.encode()[:-1], b.encode() + b"\x00"):
        with pytest.raises(MalformedMessage):
            PrekeyBundle.decode(junk)


def test_low_order_ratchet_key_in_an_envelope_is_malformed():
    A, B, rng = pair()
    env = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"x")
    e = parse_envelope(env)
    off = e.ad.index(e.dh)
    with pytest.raises(MalformedMessage):
        parse_envelope(env[:off] + bytes(32) + env[off + 32:])


# --- identities: the pair (identity key, signing key), pinned and checked ----------------------------

def _foreign_signed_bundle(victim: Identity, rng) -> bytes:
    """The victim's real IK with a signing key and a signed prekey the attacker holds."""
    sig, spk = SigningKey.generate(rng.bytes), KeyPair.generate(rng.bytes)
    s = sig.sign(msg._spk_message(victim.name, victim.public, 1, spk.public_bytes))
    return PrekeyBundle(victim.name, victim.public, sig.public_bytes, 1, spk.public_bytes, s).encode()


def test_bundle_with_the_real_identity_key_and_a_foreign_signing_key_is_refused():
    rng = np.random.default_rng(40)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes)
    forged = _foreign_signed_bundle(b, rng)
    PrekeyBundle.decode(forged)  # the signature verifies: only the identity check can refuse it
    directory = {"alice": a.identity, "bob": b.identity}
    with pytest.raises(IdentityMismatch):
        Mailbox(a, {"bob": forged}, directory=directory).session_to("bob", random_bytes=rng.bytes)
    # without a directory: the pair pinned on first contact refuses it for the next session
    served = {"bob": b.bundle()}
    A = Mailbox(a, lambda peer: served[peer])
    A.session_to("bob", random_bytes=rng.bytes)
    assert A.pinned["bob"] == b.public + b.signing.public_bytes
    del A.sessions["bob"]
    served["bob"] = forged
    with pytest.raises(IdentityMismatch):
        A.session_to("bob", random_bytes=rng.bytes)


def test_x3dh_ad_binds_both_identity_keys_and_both_signing_keys():
    A, B, rng = pair(41)
    B.receive(A.session_to("bob", random_bytes=rng.bytes).encrypt(b"x"))
    expect = A.me.public + A.me.signing.public_bytes + B.me.public + B.me.signing.public_bytes
    assert A.sessions["bob"].ad == B.sessions["alice"].ad == expect and len(expect) == 128


def test_responder_refuses_an_initiator_whose_identity_is_not_the_directorys():
    rng = np.random.default_rng(42)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes)
    mallory = Identity.generate("alice", rng.bytes)  # her own keys, under alice's name
    bundles = {"bob": b.bundle()}
    env = Mailbox(mallory, bundles).session_to("bob", random_bytes=rng.bytes).encrypt(b"from alice")
    B = Mailbox(b, bundles, directory={"alice": a.identity, "bob": b.identity})
    opks = dict(b.opks)
    with pytest.raises(IdentityMismatch):
        B.receive(env)
    assert B.sessions == {} and b.opks == opks
    with pytest.raises(IdentityMismatch):  # a name the directory does not list
        Mailbox(b, bundles, directory={"bob": b.identity}).receive(env)
    # without a directory: once alice is pinned, a new session under her name and another key is refused
    T = Mailbox(b, bundles)
    T.receive(Mailbox(a, bundles).session_to("bob", random_bytes=rng.bytes).encrypt(b"hi"))
    with pytest.raises(IdentityMismatch):
        T.receive(env)
    assert T.sessions["alice"].peer_identity == a.identity


def test_replayed_initial_message_without_one_time_prekey_is_refused():
    """No OPK left: the replay of an old initial message must not replace the live session."""
    rng = np.random.default_rng(43)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes, n_prekeys=0)
    d = {"alice": a.bundle(), "bob": b.bundle()}
    A, B = Mailbox(a, d), Mailbox(b, d)
    old = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"old")
    assert parse_envelope(old).prekey.opk_id == msg.NO_OPK
    B.receive(old)
    del A.sessions["bob"]  # alice starts a newer session (a reinstall, say)
    B.receive(A.session_to("bob", random_bytes=rng.bytes).encrypt(b"new"))
    live = B.sessions["alice"]
    with pytest.raises(ReplayError):
        B.receive(old)
    assert B.sessions["alice"] is live
    assert B.receive(A.sessions["bob"].encrypt(b"still live"))[1] == b"still live"


def test_one_time_prekeys_are_topped_up_with_fresh_ids_and_published():
    rng = np.random.default_rng(44)
    b = Identity.generate("bob", rng.bytes, n_prekeys=2)
    store = PrekeyStore()
    store.publish(b.bundle())
    store.serve("bob"), store.serve("bob")
    assert store.remaining("bob") == 0
    store.publish(b.add_prekeys(5, rng.bytes))
    assert store.remaining("bob") == 5
    served = PrekeyBundle.decode(store.serve("bob"))
    assert served.opks[0][0] == 2 and served.opks[0][0] in b.opks  # ids continue, never reused


def test_signed_prekey_rotates_and_the_old_one_is_deleted_after_its_grace():
    rng = np.random.default_rng(45)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes, n_prekeys=0)
    d = {"alice": a.bundle(), "bob": b.bundle()}
    in_flight = Mailbox(a, d).session_to("bob", random_bytes=rng.bytes).encrypt(b"on spk 1")
    store = PrekeyStore()
    store.publish(b.bundle())
    store.publish(b.rotate_spk(rng.bytes))
    assert PrekeyBundle.decode(store.serve("bob")).spk_id == b.spk_id == 2
    assert Mailbox(b, d).receive(in_flight)[1] == b"on spk 1"  # grace: the previous SPK still answers
    b.rotate_spk(rng.bytes)
    assert 1 not in b.old_spks and 1 not in b.seen_eks
    with pytest.raises(ProtocolError):
        Mailbox(b, d).receive(in_flight)
    stale = KeyPair.generate(rng.bytes).public_bytes
    sig = b.signing.sign(msg._spk_message(b.name, b.public, 1, stale))
    with pytest.raises(ReplayError):  # the provider keeps the newest signed prekey
        store.publish(PrekeyBundle(b.name, b.public, b.signing.public_bytes, 1, stale, sig).encode())


# --- forward secrecy and post-compromise security ------------------------------------------------

def _chain_keys(ck: bytes, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        mk, ck = msg._kdf_ck(ck)
        out.append(mk)
    return out


def attacker_message_keys(privates: list[KeyPair], roots: list[bytes], chains: list[bytes],
                          skipped: list[bytes], publics: list[bytes], depth: int = 4) -> set[bytes]:
    """Every message key an attacker can derive from what it holds: each chain key walked
    forward, every skipped key, and every chain that one root-KDF step gives from a root key it
    holds and a DH of a private key it holds with a public key it saw."""
    keys = set(skipped)
    for ck in chains:
        keys.update(_chain_keys(ck, depth))
    for rk in roots:
        for sk in privates:
            for pub in publics:
                try:
                    dh = sk.exchange(pub)
                except ProtocolError:
                    continue
                _, ck = msg._kdf_rk(rk, dh)
                keys.update(_chain_keys(ck, depth))
    return keys


def _opens(env_bytes: bytes, x3dh_ad: bytes, keys: set[bytes]) -> bool:
    env = parse_envelope(env_bytes)
    for mk in keys:
        key, nonce = msg._expand(mk)
        try:
            aead_decrypt(key, nonce, env.ciphertext, x3dh_ad + env.ad)
            return True
        except AuthenticationFailed:
            continue
    return False


def _x3dh_roots(victim: Identity, envs: list[bytes]) -> list[bytes]:
    """Root keys an attacker holding the victim's long-term keys can recompute from recorded
    prekey messages (with every one-time prekey still held, and with none)."""
    roots = []
    for e in envs:
        h = parse_envelope(e).prekey
        if h is None:
            continue
        for spk in (victim.spk, *victim.old_spks.values()):
            base = [spk.exchange(h.ik), victim.keypair.exchange(h.ek), spk.exchange(h.ek)]
            roots.append(msg._x3dh_kdf(base))
            roots += [msg._x3dh_kdf(base + [opk.exchange(h.ek)]) for opk in victim.opks.values()]
    return roots


def _everything(*mailboxes: Mailbox, envs: list[bytes]):
    privates, roots, chains, skipped = [], [], [], []
    for mb in mailboxes:
        me = mb.me
        privates += [me.keypair, me.spk, *me.old_spks.values(), *me.opks.values()]
        for s in mb.sessions.values():
            st = s.state
            roots.append(st.rk)
            privates += [st.dhs] if st.dhs else []
            chains += [c for c in (st.cks, st.ckr) if c]
            skipped += list(st.skipped.values())
        roots += _x3dh_roots(me, envs)
    publics = []
    for e in envs:
        p = parse_envelope(e)
        publics += [p.dh] + ([p.prekey.ek, p.prekey.ik] if p.prekey else [])
    publics += [mb.me.public for mb in mailboxes] + [mb.me.spk.public_bytes for mb in mailboxes]
    return privates, roots, chains, skipped, publics


def _conversation(A, B, rng, rounds=3, per_turn=2):
    recorded = []
    for r in range(rounds):
        for snd, rcv, peer in ((A, B, "bob"), (B, A, "alice")):
            for i in range(per_turn):
                e = snd.session_to(peer, random_bytes=rng.bytes).encrypt(f"{peer}-{r}-{i}".encode())
                rcv.receive(e)
                recorded.append(e)
    return recorded


def test_forward_secrecy_full_compromise_of_both_parties():
    A, B, rng = pair(11)
    recorded = _conversation(A, B, rng)
    x3dh_ad = A.sessions["bob"].ad
    # the attacker now holds every long-term key (identity, signing, signed prekey, remaining
    # one-time prekeys) and every current session secret (root, chain, ratchet and skipped keys) of both
    keys = attacker_message_keys(*_everything(A, B, envs=recorded))
    assert len(keys) > 1000
    assert not any(_opens(e, x3dh_ad, keys) for e in recorded)
    # not a vacuous attacker: what is sent in the current chain after the compromise opens
    nxt = B.session_to("alice", random_bytes=rng.bytes).encrypt(b"after compromise")
    assert _opens(nxt, x3dh_ad, keys)


def test_forward_secrecy_fails_without_ratchet_steps_if_the_one_time_prekey_is_kept():
    """The negative control: were the one-time prekey not deleted, the same attacker would open
    the first flight (X3DH alone gives no forward secrecy against a kept prekey)."""
    A, B, rng = pair(12)
    opks = dict(B.me.opks)
    first = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"first")
    B.receive(first)
    B.me.opks.update(opks)  # undo the deletion
    keys = attacker_message_keys(*_everything(B, envs=[first]))
    assert _opens(first, A.sessions["bob"].ad, keys)


def test_one_way_session_without_one_time_prekey_is_exposed_until_its_signed_prekey_is_deleted():
    """What holds without an OPK and without a reply (no DH ratchet step): a full compromise
    opens the whole recorded session while the responder still holds the signed prekey's
    private key (through the grace of one rotation), and none of it once that key is deleted."""
    rng = np.random.default_rng(13)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes, n_prekeys=0)
    d = {"alice": a.bundle(), "bob": b.bundle()}
    A, B = Mailbox(a, d), Mailbox(b, d)
    s = A.session_to("bob", random_bytes=rng.bytes)
    envs = [s.encrypt(f"one-way {i}".encode()) for i in range(3)]
    for e in envs:
        B.receive(e)
    ad = s.ad
    def opened():
        keys = attacker_message_keys(*_everything(A, B, envs=envs))
        return [_opens(e, ad, keys) for e in envs]
    assert opened() == [True, True, True]
    b.rotate_spk(rng.bytes)
    assert opened() == [True, True, True]  # the grace period: the old SPK private key is still held
    b.rotate_spk(rng.bytes)
    assert opened() == [False, False, False]


def test_post_compromise_recovery_after_one_dh_ratchet_step():
    A, B, rng = pair(13)
    _conversation(A, B, rng, rounds=1)
    stolen = copy.deepcopy(B)  # the attacker copies bob's whole state (keys and sessions) once
    x3dh_ad = A.sessions["bob"].ad
    same_chain = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"still readable")
    B.receive(same_chain)
    assert stolen.receive(same_chain)[1] == b"still readable"  # the compromise is real
    # bob's next send draws a fresh ratchet key: one DH ratchet step the attacker did not see
    healed = [B.session_to("alice", random_bytes=rng.bytes).encrypt(b"healed")]
    A.receive(healed[0])
    healed.append(A.session_to("bob", random_bytes=rng.bytes).encrypt(b"healed too"))
    B.receive(healed[1])
    keys = attacker_message_keys(*_everything(stolen, envs=[same_chain, *healed]))
    assert not any(_opens(e, x3dh_ad, keys) for e in healed)
    for e in healed:
        with pytest.raises(ProtocolError):
            stolen.receive(e)


# --- known-answer test and the documented layout ----------------------------------------------------

def counter_random(label: bytes):
    """A fixed, library-independent random source for known-answer tests."""
    state = {"i": 0}

    def draw(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(label + state["i"].to_bytes(8, "big")).digest()
            state["i"] += 1
        return out[:n]
    return draw


def kat_envelopes() -> dict[str, str]:
    ra, rb, rs = counter_random(b"kat-alice"), counter_random(b"kat-bob"), counter_random(b"kat-send")
    a, b = Identity.generate("alice", ra, n_prekeys=2), Identity.generate("bob", rb, n_prekeys=2)
    d = {"alice": a.bundle(), "bob": b.bundle()}
    A, B = Mailbox(a, d), Mailbox(b, d)
    first = A.session_to("bob", random_bytes=rs).encrypt(b"hello bob", b"\xd0" * 8, b"\x5e" * 4)
    B.receive(first)
    reply = B.session_to("alice", random_bytes=rs).encrypt(b"hello alice", b"\xd1" * 8)
    A.receive(reply)
    return {"bundle_bob": d["bob"].hex(), "prekey_message": first.hex(), "ratchet_message": reply.hex()}


def test_envelope_known_answer():
    expected = json.loads((VECTORS / "envelope_kat.json").read_text())
    assert kat_envelopes() == expected["outputs"]


def test_envelope_layout_matches_the_docstring():
    env = bytes.fromhex(json.loads((VECTORS / "envelope_kat.json").read_text())["outputs"]["prekey_message"])
    assert env[:4] == b"E2EB" and list(env[4:9]) == [3, 1, 2, 1, 5]
    assert env[9:14] == b"alice" and env[14] == 3 and env[15:18] == b"bob"
    p = parse_envelope(env)
    assert env[18:50] == p.prekey.ik and env[50:82] == p.prekey.sig_key and env[82:114] == p.prekey.ek
    assert struct.unpack(">II", env[114:122]) == (p.prekey.spk_id, p.prekey.opk_id) == (1, 0)
    assert env[122:154] == p.dh and struct.unpack(">III", env[154:166]) == (0, 0, 8)
    assert env[166:174] == b"\xd0" * 8
    (clen,) = struct.unpack(">I", env[174:178])
    assert clen == len(env) - 178 == 2 + 4 + len(b"hello bob") + 16
    r = bytes.fromhex(json.loads((VECTORS / "envelope_kat.json").read_text())["outputs"]["ratchet_message"])
    assert r[7] == msg.KIND_RATCHET and len(r) == 76 + 3 + 5 + 8 + len(b"hello alice")


def test_x3dh_kdf_is_hkdf_as_documented():
    dhs = [bytes([i]) * 32 for i in range(4)]
    assert msg._x3dh_kdf(dhs) == hkdf(b"\xff" * 32 + b"".join(dhs), b"e2eebench X3DH v2", 32, salt=bytes(32))
