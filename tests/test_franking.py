"""user-report-franking: commitment, provider stamp, verified reports, forged reports rejected."""
from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from e2eebench.clientside.device import Messenger, encode_png
from e2eebench.clientside.hashing import get_hasher
from e2eebench.protocols.channel import PROVIDER, RECIPIENT, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.errors import AuthenticationFailed, ConfigError, IdentityMismatch, MalformedMessage, ReplayError
from e2eebench.protocols.franking import (COMMIT_BYTES, REPORT_LABEL, UserReportFranking, commitment, encode_report,
                                         seal_report)
from e2eebench.protocols.messaging import (DEFAULT_PREKEYS, LOW_PREKEYS, Identity, Mailbox, MessageBody, PrekeyBundle,
                                           parse_envelope)
from e2eebench.protocols import wire
from e2eebench.server.database import KnownHashDatabase
from e2eebench.server.relay import PrekeyStore, Relay
from e2eebench.evaluation.data.corpora import get_corpus


def _setup(report_rate=1.0, seed=0, directory=False):
    items = get_corpus("dead-leaves", seed=4, size=96).items(3)
    hasher = get_hasher("pdq")
    db = KnownHashDatabase.from_images([items[0]], [hasher])
    scheme = UserReportFranking(hasher, report_rate=report_rate)
    ch = Channel(Ledger())
    clock = PartyClock()
    ctx = lambda mid, acct="alice": MessageContext(mid, acct, ch, clock, np.random.default_rng([seed, len(mid)]))
    pstate, bundle = scheme.provider_setup(db, ctx("setup", PROVIDER))
    prekeys = PrekeyStore()
    rng = np.random.default_rng(seed)
    devs = {}
    ids = {n: Identity.generate(n, rng.bytes) for n in ("alice", "bob", PROVIDER)}
    known = {n: i.identity for n, i in ids.items()} if directory else None
    for n in ("alice", "bob"):
        devs[n] = Messenger(ids[n], prekeys, scheme, scheme.device_load(bundle, n, ctx("b")), identities=known)
        devs[n].register(ctx("p", n))
    relay = Relay(scheme, pstate, ids[PROVIDER], prekeys)
    scheme.connect(ch, pstate, lambda a: devs[a].state)
    return scheme, pstate, devs, relay, ctx, items, ch


def _send(devs, relay, ctx, image, mid, known):
    c = ctx(mid)
    c.extra["recipient_judges_abusive"] = known
    sent = devs["alice"].send("bob", c, image=image)
    delivery = relay.handle(sent.envelope, c)
    devs["bob"].receive(delivery, c)
    return sent, delivery, c


def test_reported_known_image_is_detected_and_the_reporter_learns_nothing():
    scheme, pstate, devs, relay, ctx, items, ch = _setup()
    sent, delivery, c = _send(devs, relay, ctx, items[0].image, "m1", True)
    assert len(parse_envelope(sent.envelope).payload) == COMMIT_BYTES
    assert [x.value for x in c.ledger.learned_by(PROVIDER, "verdict")] == [True]
    back = [t for t in ch.transfers if t.label == REPORT_LABEL + ":response"]
    assert [t.size for t in back] == [1]  # a constant acknowledgement, not the verdict
    sent2, _, c2 = _send(devs, relay, ctx, items[1].image, "m2", True)  # reported, not in the list
    assert [x.value for x in c2.ledger.learned_by(PROVIDER, "verdict") if x.message_id == "m2"] == [False]
    assert len(parse_envelope(sent2.envelope).payload) == COMMIT_BYTES  # one size whatever the verdict


def test_the_report_travels_sealed_to_the_provider():
    scheme, pstate, devs, relay, ctx, items, ch = _setup()
    sent, delivery, c = _send(devs, relay, ctx, items[0].image, "m1", True)
    reports = [data for t, data in ch.ledger.received[PROVIDER] if t.label == REPORT_LABEL]
    assert len(reports) == 1
    image = encode_png(items[0].image)
    assert image[:64] not in reports[0] and sent.body not in reports[0] and b"alice" not in reports[0]
    assert len(reports[0]) == 32 + len(encode_report(sent.body, bytes(32), "alice", "bob", delivery.stamp)) + 16


def test_without_a_report_the_provider_learns_nothing():
    scheme, pstate, devs, relay, ctx, items, ch = _setup(report_rate=0.0)
    _, _, c = _send(devs, relay, ctx, items[0].image, "m1", True)
    assert c.ledger.learned_by(PROVIDER) == []
    assert not [t for t in ch.transfers if t.label == REPORT_LABEL]


def _report_parts(devs, relay, ctx, items):
    c = ctx("m9")
    sent = devs["alice"].send("bob", c, image=items[0].image)
    delivery = relay.handle(sent.envelope, c)
    d = devs["bob"].mailbox.open(delivery.envelope, delivery.stamp)
    return d, c


def test_forged_or_altered_reports_are_rejected():
    scheme, pstate, devs, relay, ctx, items, ch = _setup()
    d, c = _report_parts(devs, relay, ctx, items)
    key = pstate["report_keys"].public_bytes
    good = seal_report(key, encode_report(d.body, d.sealed, d.sender, "bob", d.stamp), c)
    other_body = encode_png(items[1].image)
    forged = [
        encode_report(d.body[:-1] + bytes([d.body[-1] ^ 1]), d.sealed, d.sender, "bob", d.stamp),  # altered message
        encode_report(d.body, bytes(32), d.sender, "bob", d.stamp),  # another franking key
        encode_report(d.body, d.sealed, "carol", "bob", d.stamp),  # re-attributed sender
        encode_report(d.body, d.sealed, d.sender, "bob", d.stamp[:8] + bytes(32)),  # made-up tag
        encode_report(d.body, d.sealed, d.sender, "bob", struct.pack(">Q", 99) + d.stamp[8:]),  # other time
        encode_report(other_body, d.sealed, d.sender, "bob", d.stamp),
    ]
    for bad in forged:
        with pytest.raises(AuthenticationFailed):
            scheme.provider_answer(pstate, REPORT_LABEL, seal_report(key, bad, c), c)
    inner = encode_report(d.body, d.sealed, d.sender, "bob", d.stamp)
    for bad in (b"", inner[:-3], wire.pack(b"FRR1", [b"x"]), inner + b"\x00"):
        with pytest.raises(MalformedMessage):
            scheme.provider_answer(pstate, REPORT_LABEL, seal_report(key, bad, c), c)
    for bad in (good[:-1], good[:-1] + bytes([good[-1] ^ 1]), inner):  # tampered, or not sealed
        with pytest.raises(AuthenticationFailed):
            scheme.provider_answer(pstate, REPORT_LABEL, bad, c)
    with pytest.raises(AuthenticationFailed):  # sealed for another message: does not open here
        scheme.provider_answer(pstate, REPORT_LABEL, seal_report(key, inner, ctx("m-other")), c)
    assert scheme.provider_answer(pstate, REPORT_LABEL, good, c) == b"\x00"
    with pytest.raises(ReplayError):
        scheme.provider_answer(pstate, REPORT_LABEL, good, c)


def test_recipient_rejects_a_message_that_does_not_open_its_commitment():
    scheme, pstate, devs, relay, ctx, items, ch = _setup()
    d, c = _report_parts(devs, relay, ctx, items)
    from dataclasses import replace
    with pytest.raises(AuthenticationFailed):
        scheme.recipient_receive(devs["bob"].state, replace(d, sealed=bytes(32)), c)
    with pytest.raises(MalformedMessage):
        scheme.recipient_receive(devs["bob"].state, replace(d, stamp=b""), c)


def test_report_rate_is_a_seeded_share():
    scheme, pstate, devs, relay, ctx, items, ch = _setup(report_rate=0.3, seed=5)
    for i in range(200):
        c = ctx(f"m{i:03d}")
        c.extra["recipient_judges_abusive"] = True
        c.rng = np.random.default_rng([5, i])
        sent = devs["alice"].send("bob", c, text="t", image=items[2].image)
        devs["bob"].receive(relay.handle(sent.envelope, c), c)
    decisions = [x.value for x in ch.ledger.learned_by(RECIPIENT, "report-decision")]
    assert len(decisions) == 200 and 0.2 < np.mean(decisions) < 0.4
    with pytest.raises(ConfigError):
        UserReportFranking(get_hasher("pdq"), report_rate=1.5)


# --- who sent it: the identity behind a sender name -------------------------------------------------

def test_provider_refuses_a_bundle_for_an_account_under_another_identity():
    scheme, pstate, devs, relay, ctx, items, ch = _setup()
    impostor = Identity.generate("alice", np.random.default_rng(99).bytes)
    with pytest.raises(IdentityMismatch):
        relay.prekeys.publish(impostor.bundle())
    assert PrekeyBundle.decode(relay.prekeys.serve("alice")).identity == devs["alice"].identity.identity


def _mallory_as_alice(relay, ctx, image):
    """A stranger's message, under alice's name, stamped by the relay as alice's."""
    mallory = Identity.generate("alice", np.random.default_rng(98).bytes)
    c = ctx("m-mallory")
    c.extra["recipient_judges_abusive"] = True
    body, kf = MessageBody(image=encode_png(image)).encode(), c.random_bytes(32)
    env = Mailbox(mallory, relay.prekeys.serve).session_to("bob", random_bytes=c.random_bytes).encrypt(
        body, commitment(kf, body), kf)
    return relay.handle(env, c), c


@pytest.mark.parametrize("directory", [True, False])
def test_a_strangers_message_stamped_as_alices_is_refused_so_no_report_blames_alice(directory):
    scheme, pstate, devs, relay, ctx, items, ch = _setup(directory=directory)
    if not directory:  # trust on first use: bob has heard from the real alice once
        _send(devs, relay, ctx, items[2].image, "m0", False)
    delivery, c = _mallory_as_alice(relay, ctx, items[0].image)
    with pytest.raises(IdentityMismatch):
        devs["bob"].receive(delivery, c)
    assert [x for x in c.ledger.learned_by(PROVIDER, "report") if x.message_id == "m-mallory"] == []
    assert "alice" not in devs["bob"].mailbox.sessions or \
        devs["bob"].mailbox.sessions["alice"].peer_identity == devs["alice"].identity.identity


def test_the_provider_asks_for_more_one_time_prekeys_and_the_device_tops_up_on_the_channel():
    scheme, pstate, devs, relay, ctx, items, ch = _setup()
    while relay.prekeys.remaining("bob") >= LOW_PREKEYS:
        relay.prekeys.serve("bob")  # other senders starting sessions with bob
    sent, delivery, c = _send(devs, relay, ctx, items[2].image, "m-low", False)
    assert delivery.prekeys_left is not None and delivery.prekeys_left < LOW_PREKEYS
    assert relay.prekeys.remaining("bob") == DEFAULT_PREKEYS
    labels = [(t.sender, t.receiver, t.label) for t in ch.transfers if t.message_id == "prekeys:m-low"]
    assert labels == [(PROVIDER, RECIPIENT, "prekeys:low"), (RECIPIENT, PROVIDER, "prekeys:publish")]
    published = [t.size for t in ch.transfers if t.message_id == "prekeys:m-low" and t.label == "prekeys:publish"]
    empty = dataclasses.replace(PrekeyBundle.decode(devs["bob"].identity.bundle()), opks=())
    assert published[0] == len(empty.encode()) + 36 * (DEFAULT_PREKEYS - delivery.prekeys_left)
    _, later, _ = _send(devs, relay, ctx, items[2].image, "m-after", False)
    assert later.prekeys_left is None
