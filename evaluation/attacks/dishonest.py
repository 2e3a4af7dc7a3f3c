"""Dishonest client: a sender that strips, replays, garbles, forges or substitutes the
detection payload of a message carrying a known image. What does the provider notice?

The E2EE envelope binds the payload to the ciphertext through the AEAD's associated
data, so a *relay* cannot swap a payload without the recipient's decryption failing
(:func:`relay_swap_detected` measures it). A dishonest *sender* controls both, so the
only defences are in the scheme: a payload the provider must receive for every image
(stripping is then visible), bound to the message and account (replays fail), with an
integrity check (garbling and forging fail). No scheme that computes the hash on the
device can notice **substitution** (a well-formed payload computed from another image):
the device is trusted to hash what it sends. Every outcome here comes from running the
scheme's real roles; none is declared.

Outcomes per manipulation: ``rejected:<Error>`` (a typed protocol error: the provider
notices and can refuse delivery), ``detected`` (no error, but the provider still reaches a
positive verdict on the known image), ``accepted`` (silently: the known image goes through
undetected), ``crash:<Exception>`` (an untyped failure: a bug in the scheme).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from e2eebench.clientside.hashing import Hasher
from e2eebench.evaluation.attacks.oracle import make_ctx, tiny_setup
from e2eebench.protocols.channel import DEVICE, PROVIDER
from e2eebench.protocols.errors import ProtocolError
from e2eebench.server.database import KnownHashDatabase

MANIPULATIONS = ("honest", "strip", "replay", "garble", "forge", "substitute")
Progress = Callable[[str, int, int], None]
# per-scheme parameters that make a single message observable (a threshold scheme would
# otherwise stay silent below t by design: that is measured by the account-threshold study)
PROBE_PARAMS = {"tpsi-ad": {"t": 1, "synthetic_rate": 0.0}}


@dataclass
class DishonestResult:
    scheme: str
    outcomes: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def noticed(self, manipulation: str) -> bool | None:
        o = self.outcomes.get(manipulation)
        if o is None or o.startswith("n/a"):
            return None
        return o.startswith("rejected") or o == "detected"

    def record(self) -> dict:
        return {"scheme": self.scheme, **self.outcomes}


def _flip(b: bytes, rng: np.random.Generator) -> bytes:
    a = bytearray(b)
    i = int(rng.integers(len(a)))
    a[i] ^= 1 << int(rng.integers(8))
    return bytes(a)


def probe_dishonest(name: str, hasher: Hasher, known: list, other: list, seed: int = 0,
                    params: dict[str, Any] | None = None) -> DishonestResult:
    """Run one honest and five manipulated known-image messages through a scheme's real roles."""
    from e2eebench.clientside.device import encode_png
    from e2eebench.protocols.messaging import MessageBody
    params = params if params is not None else PROBE_PARAMS.get(name, {})
    db = KnownHashDatabase.from_images(known, [hasher])
    scheme, pstate, dstate, channel, clock = tiny_setup(name, hasher, db, seed, params)
    rng = np.random.default_rng(seed)
    res = DishonestResult(name, params=dict(params))
    prepared: dict[str, bytes] = {}

    def prepare(img, ctx) -> bytes:
        with channel.exchange(ctx.message_id), clock.role(DEVICE):
            return scheme.device_prepare(dstate, img, ctx).payload

    plan: list[tuple[str, Any]] = []
    for i, m in enumerate(MANIPULATIONS):
        img = known[i % len(known)].image
        mid = f"msg-{m}"
        ctx = make_ctx(channel, clock, mid, "alice", seed)  # one context per message: side inboxes live in it
        honest = prepare(img, ctx)
        prepared[m] = honest
        if m == "honest":
            payload = honest
        elif m == "strip":
            payload = b""
        elif m == "replay":
            payload = prepared["honest"]
        elif m == "garble":
            payload = _flip(honest, rng) if honest else None
        elif m == "forge":  # same length as the honest payload (or 32 bytes where that is empty)
            payload = rng.bytes(len(honest) or 32)
        else:  # substitute: a well-formed payload computed from an unrelated image
            payload = prepare(other[0].image, ctx)
        plan.append((m, (mid, img, payload, honest, ctx)))

    for m, (mid, img, payload, honest, ctx) in plan:
        if payload is None:
            res.outcomes[m] = "n/a: honest payload is empty for this image"
            continue
        body = None if scheme.e2ee else MessageBody(image=encode_png(img))
        try:
            with channel.exchange(mid), clock.role(PROVIDER):
                scheme.provider_receive(pstate, channel.send(DEVICE, PROVIDER, "payload", payload), ctx, body)
            res.outcomes[m] = "pending"
        except ProtocolError as e:
            res.outcomes[m] = f"rejected:{type(e).__name__}"
        except Exception as e:  # noqa: BLE001 - an untyped failure is itself the finding
            res.outcomes[m] = f"crash:{type(e).__name__}"
    fin = make_ctx(channel, clock, "finalize", PROVIDER, seed)
    try:
        with channel.exchange("finalize"), clock.role(PROVIDER):
            scheme.provider_finalize(pstate, fin)
    except ProtocolError:
        pass
    party = scheme.detector
    for m, (mid, *_rest) in plan:
        if res.outcomes.get(m) == "pending":
            hit = any(x.value for x in channel.ledger.learned
                      if x.message_id == mid and x.party == party and x.kind == "verdict")
            res.outcomes[m] = "detected" if hit else "accepted"
    return res


def run_dishonest(names: list[str], hasher: Hasher, seed: int = 0, n_known: int = 6,
                  progress: Progress | None = None) -> list[DishonestResult]:
    from e2eebench.evaluation.data.corpora import get_corpus
    items = get_corpus("dead-leaves", seed=seed, size=128).items(n_known + 2)
    known, other = items[:n_known], items[n_known:]
    out = []
    for i, n in enumerate(names):
        out.append(probe_dishonest(n, hasher, known, other, seed))
        if progress:
            progress("dishonest client", i + 1, len(names))
    return out


def relay_swap_detected(seed: int = 0) -> dict[str, bool]:
    """Does the recipient notice a relay that strips or alters the payload in the envelope?"""
    from e2eebench.protocols.messaging import Identity, Mailbox
    rng = np.random.default_rng(seed)
    out = {}
    for kind in ("alter", "strip"):
        a, b = Identity.generate("alice", rng.bytes), Identity.generate("bob", rng.bytes)
        directory = {"alice": a.bundle(), "bob": b.bundle()}
        payload = rng.bytes(48)
        env = Mailbox(a, directory).session_to("bob", random_bytes=rng.bytes).encrypt(b"hello", payload)
        i = env.find(payload)
        if kind == "alter":
            tampered = env[:i] + rng.bytes(len(payload)) + env[i + len(payload):]
        else:  # drop the payload and fix the length field so the envelope still parses
            tampered = env[:i - 4] + (0).to_bytes(4, "big") + env[i + len(payload):]
        try:
            Mailbox(b, directory).receive(tampered)
            out[kind] = False
        except ProtocolError:
            out[kind] = True
    return out
