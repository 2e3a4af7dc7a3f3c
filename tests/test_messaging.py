"""The simulated E2EE session: bit-exact delivery, binding of the detection payload, replay."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from e2eebench.protocols.errors import AuthenticationFailed, MalformedMessage, ProtocolError, ReplayError
from e2eebench.protocols.messaging import MAX_SKIP, Identity, Mailbox, MessageBody, parse_envelope


def pair(seed=0):
    rng = np.random.default_rng(seed)
    a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes)
    d = {"alice": a.public, "bob": b.public}
    return Mailbox(a, d), Mailbox(b, d), rng


def test_round_trip_and_payload_delivered():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    env = s.encrypt(b"hello", b"PAYLOAD")
    sender, body, payload = B.receive(env)
    assert (sender, body, payload) == ("alice", b"hello", b"PAYLOAD")
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


def test_swapped_payload_is_rejected():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    e1 = parse_envelope(s.encrypt(b"one", b"payload-one"))
    e2 = parse_envelope(s.encrypt(b"two", b"payload-TWO"))
    # rebuild envelope 1 with envelope 2's payload (same length), as a dishonest relay would
    swapped = e1.ad.replace(b"payload-one", b"payload-TWO") + len(e1.ciphertext).to_bytes(4, "big") + e1.ciphertext
    with pytest.raises(AuthenticationFailed):
        B.receive(swapped)
    # stripping the payload altogether is rejected too
    stripped_ad = e1.ad[: -len(e1.payload) - 4] + (0).to_bytes(4, "big")
    with pytest.raises(AuthenticationFailed):
        B.receive(stripped_ad + len(e1.ciphertext).to_bytes(4, "big") + e1.ciphertext)
    assert B.receive(e2.ad + len(e2.ciphertext).to_bytes(4, "big") + e2.ciphertext)[1] == b"two"


def test_out_of_order_within_window_and_replay_rejected():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    envs = [s.encrypt(f"m{i}".encode()) for i in range(20)]
    order = np.random.default_rng(5).permutation(20)
    for i in order:
        assert B.receive(envs[i])[1] == f"m{i}".encode()
    with pytest.raises(ReplayError):
        B.receive(envs[3])


def test_too_far_ahead_rejected():
    A, B, rng = pair()
    s = A.session_to("bob", random_bytes=rng.bytes)
    for _ in range(MAX_SKIP + 2):
        env = s.encrypt(b"x")
    with pytest.raises(ProtocolError):
        B.receive(env)


def test_two_directions_use_independent_chains():
    A, B, rng = pair()
    env = A.session_to("bob", random_bytes=rng.bytes).encrypt(b"ping")
    B.receive(env)
    back = B.session_to("alice", random_bytes=rng.bytes).encrypt(b"pong")
    assert A.receive(back)[1] == b"pong"


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
    # a forged envelope with a fresh session key must not leave state behind in the mailbox
    A, B, rng = pair()
    env = bytearray(A.session_to("bob", random_bytes=rng.bytes).encrypt(b"x"))
    env[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        B.receive(bytes(env))
    assert B.sessions == {}
    env[-1] ^= 1
    assert B.receive(bytes(env))[1] == b"x"
    assert len(B.sessions) == 1
