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
from collections.abc import Mapping
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


class PartyViews(Mapping):
    """One party's views, message id -> :class:`MessageView`, built when read: only an index of
    the ledger's rows is held, so a long run's views are read back one message at a time."""

    def __init__(self, received, opened, msgs: dict) -> None:
        self._received, self._opened, self._msgs = received, opened, msgs
        self._rows: dict[str, tuple[list[int], list[int]]] = {}
        self._bounds: dict[int, tuple[int, int, int] | None] = {}   # parsed envelopes: (payload, body) offsets

    def _add(self, mid: str, which: int, i: int) -> None:
        self._rows.setdefault(mid, ([], []))[which].append(i)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self):
        return iter(self._rows)

    def __getitem__(self, mid: str) -> MessageView:
        recv, opened = self._rows[mid]
        m = self._msgs[mid]
        ids = (m.sender.encode(), m.recipient.encode(), m.id.encode())
        v = MessageView()
        for i in recv:
            t, raw = self._received[i]
            if t.label in ENVELOPE_LABELS:
                if i not in self._bounds:   # parsed once; later reads slice at the same offsets
                    self._bounds[i] = _envelope_bounds(raw)
                b = self._bounds[i]
                if b is not None:
                    payload = raw[b[0]:b[1]]
                    v.payload_lengths.append(len(payload))
                    v.sizes.append(len(payload))
                    v.raw.append(_blank(payload, ids))
                    v.raw.append(raw[b[2]:])  # the body as it crossed (E2EE or transport)
                    v.bodies.append(v.raw[-1])
                    continue
            v.sizes.append(t.size)
            v.raw.append(_blank(raw, ids))
        for i in opened:
            _, label, plain = self._opened[i]
            v.opened.append((label, _blank(plain, ids)))
        return v


def _envelope_bounds(raw: bytes) -> tuple[int, int, int] | None:
    """Where the detection payload and the body lie in an envelope (public wire format), or None
    when it does not parse as one."""
    try:
        env = parse_envelope(raw)
    except ProtocolError:
        return None
    body = len(raw) - len(env.ciphertext)
    end = body - 4                       # the body's 4-byte length field follows the payload
    if raw[end - len(env.payload):end] != env.payload or raw[body:] != env.ciphertext:
        raise ProtocolError("envelope layout changed: update views._envelope_bounds")
    return end - len(env.payload), end, body


def _rows(items):
    """A ledger list's rows without reading their bytes where it is spilled to disk."""
    meta = getattr(items, "meta", None)
    return meta() if meta is not None else iter(items)


def party_views(run: SchemeRun, data: RunData) -> dict[str, PartyViews]:
    """party -> image message id -> its view of that message (only messages this scheme ran).
    Views are built on access (see :class:`PartyViews`); iterating a party reads each once."""
    ran = frozenset(o.message_id for o in run.outcomes if o.has_image and o.sent)
    cache = run.cache.setdefault("party_views", {})
    if ran not in cache:   # one index per run (probes ask several times)
        cache.clear()
        cache[ran] = _party_views(run, data, ran)
    return cache[ran]


def _party_views(run: SchemeRun, data: RunData, ran: frozenset) -> dict[str, PartyViews]:
    msgs = {m.id: m for m in data.workload.image_messages}
    out: dict[str, PartyViews] = {}
    for party, items in run.ledger.received.items():
        for i, (t, _) in enumerate(_rows(items)):
            if t.message_id in ran:
                out.setdefault(party, PartyViews(items, run.ledger.opened.get(party, ()), msgs)).\
                    _add(t.message_id, 0, i)
    for party, items in run.ledger.opened.items():
        for i, (mid, _, _) in enumerate(_rows(items)):
            if mid in ran:
                out.setdefault(party, PartyViews(run.ledger.received.get(party, ()), items, msgs))._add(mid, 1, i)
    return out


def observer_features(run: SchemeRun, data: RunData) -> dict[tuple[str, str], dict[str, tuple]]:
    """link -> image message id -> the (direction, size) sequence an observer of the link sees.

    Envelope sizes are replaced by their detection-payload length (the header is in the clear):
    the body's own length is the same with or without detection, and the routing header's length
    carries account ids, so neither is what detection adds (docs/leakage.md, limits)."""
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    envelope_payload: dict[int, int] = {}
    for party, items in run.ledger.received.items():
        for i, (t, _) in enumerate(_rows(items)):
            if t.message_id in ran and t.label in ENVELOPE_LABELS:
                try:
                    envelope_payload[t.seq] = len(parse_envelope(items[i][1]).payload)
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
