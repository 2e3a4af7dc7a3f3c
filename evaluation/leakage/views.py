"""Raw views: what each party and each network link actually carried, per image message.

A party's view of one message is the bytes of every transfer it received in that message's
exchange (envelopes, interactive calls both ways, server to server, dealer, enclave, delivery)
plus the plaintexts it opened with its own keys (``Ledger.opened``, recorded as bytes where
the decryption happens). A network observer's view of a link is the sequence of (direction,
size) of the transfers on it. Probes read these and nothing else: the ledger's ``learned``
entries (the scheme's own account of what a value means) are never part of a view.

Envelopes are parsed with the public wire format (an adversary knows it): the routing header
(sender and recipient ids, session key, counter) is metadata every provider already holds and
is set aside; the detection payload and the ciphertext stay. The message's own account and
message ids are cut out of the bytes, so that probes measure what the *detection* reveals
about the image, not who is talking (which the relay knows by design).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from e2eebench.protocols.errors import ProtocolError
from e2eebench.protocols.messaging import parse_envelope
from e2eebench.evaluation.run.runner import RunData, SchemeRun

ENVELOPE_LABELS = ("envelope", "deliver")


@dataclass
class MessageView:
    """One party's view of one message."""

    raw: list[bytes] = field(default_factory=list)       # received bytes (routing header set aside)
    opened: list[tuple[str, bytes]] = field(default_factory=list)  # (label, plaintext) it decrypted
    sizes: list[int] = field(default_factory=list)       # per received transfer: size (envelopes: payload)
    payload_lengths: list[int] = field(default_factory=list)  # detection payloads it received
    bodies: list[bytes] = field(default_factory=list)    # envelope bodies (also in raw): the message itself

    def chunks(self) -> list[bytes]:
        return self.raw + [b for _, b in self.opened]


def _blank(data: bytes, ids: tuple[bytes, ...]) -> bytes:
    """Cut the message's own ids out of the bytes (cut, not zeroed: a zeroed id still tells
    its length, which groups messages by account and would pass for an image link)."""
    for s in sorted(ids, key=len, reverse=True):
        if s and s in data:
            data = data.replace(s, b"")
    return data


def party_views(run: SchemeRun, data: RunData) -> dict[str, dict[str, MessageView]]:
    """party -> image message id -> its view of that message (only messages this scheme ran)."""
    msgs = {m.id: m for m in data.workload.image_messages}
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    out: dict[str, dict[str, MessageView]] = defaultdict(dict)
    for party, items in run.ledger.received.items():
        for t, raw in items:
            if t.message_id not in ran:
                continue
            m = msgs[t.message_id]
            ids = (m.sender.encode(), m.recipient.encode(), m.id.encode())
            v = out[party].setdefault(t.message_id, MessageView())
            if t.label in ENVELOPE_LABELS:
                try:
                    env = parse_envelope(raw)
                except ProtocolError:
                    env = None
                if env is not None:
                    v.payload_lengths.append(len(env.payload))
                    v.sizes.append(len(env.payload))
                    v.raw.append(_blank(env.payload, ids))
                    v.raw.append(env.ciphertext)  # the body as it crossed (E2EE or transport)
                    v.bodies.append(v.raw[-1])
                    continue
            v.sizes.append(t.size)
            v.raw.append(_blank(raw, ids))
    for party, items in run.ledger.opened.items():
        for mid, label, plain in items:
            if mid not in ran:
                continue
            m = msgs[mid]
            out[party].setdefault(mid, MessageView()).opened.append(
                (label, _blank(plain, (m.sender.encode(), m.recipient.encode(), m.id.encode()))))
    return dict(out)


def observer_features(run: SchemeRun, data: RunData) -> dict[tuple[str, str], dict[str, tuple]]:
    """link -> image message id -> the (direction, size) sequence an observer of the link sees.

    Envelope sizes are replaced by their detection-payload length (the header is in the clear):
    the body's own length is the same with or without detection, and the routing header's length
    carries account ids, so neither is what detection adds (docs/leakage.md, limits)."""
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    envelope_payload: dict[int, int] = {}
    for party, items in run.ledger.received.items():
        for t, raw in items:
            if t.message_id in ran and t.label in ENVELOPE_LABELS:
                try:
                    envelope_payload[t.seq] = len(parse_envelope(raw).payload)
                except ProtocolError:
                    pass
    out: dict[tuple[str, str], dict[str, list]] = {}
    for link, transfers in run.channel.observer_view().items():
        per: dict[str, list] = defaultdict(list)
        for t in transfers:
            if t.message_id in ran:
                per[t.message_id].append((t.sender, envelope_payload.get(t.seq, t.size)))
        if per:
            out[link] = {mid: tuple(seq) for mid, seq in per.items()}
    return out
