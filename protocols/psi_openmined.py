"""``psi-client-learns``: OpenMined's ECDH PSI over P-256 (C++), the production-grade peer.

Why: psi-ad is a research design never open-sourced; openmined-psi is a maintained library.
Running it through the same conformance suite and workload puts a real deployment-grade
number next to ours. Here the *device* learns membership (the opposite of psi-ad):

setup    the provider encrypts every list element with its P-256 key and ships the
         Golomb-compressed set (GCS) as the device bundle (with a report public key).
message  the device draws a fresh P-256 client key, sends one request (its hash blinded
         with that key) to the provider, the provider answers with the request re-encrypted
         under its key, the device intersects with the GCS locally and attaches a sealed
         payload of one fixed size: a report on a match, a cover otherwise (padded_report).

A fresh client key per request matters: with one key per device the same image gives a
byte-identical request, so the provider links every repeat of an image across a device's
traffic (the linkability probe flags that variant, ``client_key="device"``, kept for the
regression test). A payload attached only on a match would tell the recipient and any
network observer the verdict by its presence.

The request and the response cross the channel as bytes; the provider's half runs on the
provider's clock. Membership is exact up to the GCS false-positive rate ``fpr``. Keys are
drawn from the run's seeded generator (so bundles and verdicts are reproducible by seed);
the library draws no other randomness we rely on, but its internals are not ours to vouch
for: treat byte-for-byte equality across library versions as not guaranteed.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair
from e2eebench.protocols.errors import AuthenticationFailed, ConfigError, MalformedMessage, ReplayError
from e2eebench.protocols.framework import Param, Prepared, Scheme, register
from e2eebench.protocols.psi import visual_derivative
from e2eebench.protocols.padded_report import open_fixed, seal_fixed
from e2eebench.server.database import KnownHashDatabase

REPORT_INFO = b"e2eebench psi-client-learns report v1"
REPORT_SIZE = 1024  # the report carries a 256-byte derivative as hex; covers are padded to the same
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _psi():
    import private_set_intersection.python as psi  # C++ extension; imported on first use
    return psi


def p256_key(rng: np.random.Generator) -> bytes:
    """A P-256 private scalar in [1, n) from the seeded generator (rejection sampling)."""
    while True:
        k = rng.bytes(32)
        if 0 < int.from_bytes(k, "big") < P256_N:
            return k


def parse_proto(cls_name: str, data: bytes, what: str):
    msg = getattr(_psi(), cls_name)()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise MalformedMessage(f"{what} does not parse ({type(e).__name__})") from None
    return msg


def bundle_root(fields: list[bytes]) -> bytes:
    """SHA-256 over the length-prefixed fields (a plain concatenation would let bytes move
    between the setup message and the report key under the same root)."""
    return hashlib.sha256(wire.pack(b"OMP1", fields)).digest()


def checked_setup(setup):
    """Refuse a setup message the native library would abort on or read past: it must be a GCS
    with a positive hash range (it is a modulus in C++) and a Golomb divisor a 64-bit shift
    allows. The GCS bits get ceil(div/8) + 1 zero bytes appended, so a code word cut short at
    the end is read inside the buffer (trailing zero bytes end the library's decoding loop and
    change nothing for a well-formed set)."""
    if setup.WhichOneof("data_structure") != "gcs":
        raise MalformedMessage("PSI setup message must hold a Golomb-compressed set")
    g = setup.gcs
    if not 1 <= g.hash_range <= 2**62:
        raise MalformedMessage(f"PSI setup message: GCS hash range {g.hash_range} outside 1..2^62")
    if not 0 <= g.div <= 62:
        raise MalformedMessage(f"PSI setup message: GCS divisor {g.div} outside 0..62")
    if g.bits:
        g.bits = g.bits + bytes(g.div // 8 + 2)
    return setup


@register
class PsiClientLearns(Scheme):
    name = "psi-client-learns"
    family = "psi"
    eu_category = "encryption"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    verdict_to = "device; provider on report"
    trust = "device software (it decides and reports); the provider's list"
    matching = "exact"
    description = ("OpenMined ECDH PSI over P-256 (C++): GCS setup message on the device, one request/"
                   "response per image, the device learns membership and seals a report on a match")
    params = (Param("fpr", 1e-6, "false-positive rate of the GCS setup message", None, float),
              Param("client_key", "fresh", "client P-256 key: fresh per request, or one per device "
                    "(the linkable variant, for the regression test)", ("fresh", "device"), str),
              Param("payload", "fixed", "detection payload: one fixed size (report or cover), or only on "
                    "a match (the verdict-revealing variant, for the regression test)",
                    ("fixed", "on-match"), str))
    leakage = {DEVICE: ("verdict",), PROVIDER: ("verdict",)}
    leakage_text = {DEVICE: "membership of each image it sends (online: one provider round per test)",
                    PROVIDER: "the verdict per image message (the device reports it); nothing else",
                    RECIPIENT: "nothing (one payload size whatever the verdict)"}

    def __init__(self, hasher, threshold=None, **params):
        super().__init__(hasher, threshold, **params)
        if not 0 < self.p["fpr"] < 0.5:
            raise ConfigError(f"parameter 'fpr' must be in (0, 0.5), got {self.p['fpr']}")

    # -- provider ---------------------------------------------------------------------------
    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        psi = _psi()
        server = psi.server.CreateFromKey(p256_key(ctx.rng), False)
        items = sorted({h.tobytes() for h in db.hashes_for(self.hasher.name)})
        setup = server.CreateSetupMessage(self.p["fpr"], 1, items, psi.DataStructure.GCS)
        keys = KeyPair.generate(ctx.random_bytes)
        fields = [self.hasher.name.encode(), setup.SerializeToString(), keys.public_bytes]
        root = bundle_root(fields)
        state = {"server": server, "keys": keys, "address": root}
        return state, wire.pack(b"OMP1", fields + [root])

    def provider_answer(self, state: Any, label: str, request: bytes, ctx: MessageContext) -> bytes:
        """The provider's endpoint: one PSI request in, one response out (provider's clock)."""
        if label != "psi-request":
            raise MalformedMessage(f"psi-client-learns: unexpected request {label!r}")
        req = parse_proto("Request", request, "PSI request")
        try:
            resp = state["server"].ProcessRequest(req)
        except RuntimeError as e:
            raise MalformedMessage(f"PSI request rejected by the server ({e})") from None
        return resp.SerializeToString()

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        key, seen = (ctx.account, ctx.message_id), state.setdefault("seen", set())
        if payload and key in seen:
            raise ReplayError(f"{self.name}: a payload for this message was already received")
        open_fixed(state["keys"], payload, ctx, REPORT_INFO, REPORT_SIZE)
        if payload:
            seen.add(key)  # once per (account, message): a second payload is a replay

    # -- device -----------------------------------------------------------------------------
    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        name, setup_b, report_key, root = wire.unpack(b"OMP1", bundle, 4, "psi-client-learns bundle")
        if bundle_root([name, setup_b, report_key]) != root:
            raise AuthenticationFailed("psi-client-learns bundle does not match its root digest")
        if len(report_key) != 32:
            raise MalformedMessage("psi-client-learns bundle: report key must be 32 bytes")
        if name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage(f"bundle is for hasher {name!r}, device uses {self.hasher.name}")
        setup = checked_setup(parse_proto("ServerSetup", setup_b, "PSI setup message"))
        client = _psi().client.CreateFromKey(p256_key(ctx.rng), False)
        ctx.learn(DEVICE, "database", {"gcs_bytes": len(setup_b)})
        return {"client": client, "setup": setup, "report_key": report_key, "address": root}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        x = self.hasher.hash(image).tobytes()
        if self.p["client_key"] == "fresh":
            state["client"] = _psi().client.CreateFromKey(p256_key(ctx.rng), False)
        request = state["client"].CreateRequest([x]).SerializeToString()
        down = ctx.call(DEVICE, PROVIDER, "psi-request", request)
        resp = parse_proto("Response", down, "PSI response")
        try:
            match = state["client"].GetIntersectionSize(state["setup"], resp) > 0
        except RuntimeError as e:
            raise MalformedMessage(f"PSI response rejected by the client ({e})") from None
        ctx.verdict(DEVICE, match)
        report = {"derivative": visual_derivative(image).hex()} if match else None
        if report is None and self.p["payload"] == "on-match":
            return Prepared(b"")
        return Prepared(seal_fixed(state["report_key"], report, ctx, REPORT_INFO, REPORT_SIZE))
