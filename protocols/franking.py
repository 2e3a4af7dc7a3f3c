"""``user-report-franking``: what end-to-end encrypted messengers deploy today — a recipient
reports a message, and the provider can verify the report.

Message franking as in Facebook's "Messenger Secret Conversations" whitepaper (2016) and
Grubbs, Lu & Ristenpart, "Message Franking via Committing Authenticated Encryption" (CRYPTO
2017):

1. Sender, per message: a fresh 32-byte franking key ``kf``; commitment
   ``c = HMAC-SHA256(kf, body)``. ``kf`` travels inside the end-to-end ciphertext (the
   envelope's sealed slot), ``c`` in the envelope's detection payload (32 bytes for every
   message, whatever it holds), bound to the ciphertext as associated data.
2. Provider, at relay time: ``tag = HMAC-SHA256(k_p, "e2eebench franking v1" || c ||
   sender || recipient || ts)`` under its own key ``k_p``; the stamp ``ts (8) || tag (32)``
   is delivered beside the envelope. The provider learns nothing of the body (``c`` hides it:
   HMAC under a fresh random key).
3. Recipient, on receipt: checks ``HMAC(kf, body) == c`` (receiver binding: the message it
   reads is the one committed to, whatever AES-GCM's lack of key commitment would allow) and
   rejects the message otherwise.
4. Report: the recipient sends ``body, kf, sender, recipient, ts, tag``, sealed to the
   provider's report key with HPKE (RFC 9180, Base mode, ``protocols/crypto.py``) under
   ``info = "e2eebench franking report v1"`` with the message's binding (account and message
   id, ``MessageContext.binding``) as associated data, as every other sealed value in the test
   bed: on the wire the report is ``enc (32) || AES-128-GCM(report)``, so whoever carries it
   sees neither the message nor ``kf``, and a report moved to another message fails to open.
   The provider's report public key is the scheme's device bundle (``wire.pack(b"FRB1", [key])``). The provider
   opens the report, recomputes ``c`` and checks its own tag, so a forged, altered or re-attributed report is an
   :class:`AuthenticationFailed`, a second report of one message a :class:`ReplayError`; it then
   sees that one message (and no other), hashes the image and matches the known list. The
   reporter gets a constant acknowledgement, never the match result (no membership oracle).

Who reports is user behaviour, not cryptography: a recipient who receives a known image
reports it with probability ``report_rate`` and any other image with ``false_report_rate``,
drawn per message from the message's seeded generator. Both defaults are **assumed**: no
published measurement of the share of received known material that recipients report was
found; change them to see recall move with it. With ``false_report_rate`` = 0 (the default,
assumed) and the recipient judging an image abusive exactly when it is known, every report is
of a known image, so the provider never sees reported content that is not on the list: that
privacy is a consequence of the assumed user model, not of the protocol. Real users also
report by mistake or in bad faith; every such report hands the provider that one message. Recall is then ``report_rate`` times the share
of reported known images the list matches. The recipient's judgement of an image comes from
the harness (``ctx.extra["recipient_judges_abusive"]``): it models the person, not the app,
which never learns which images are known.
"""
from __future__ import annotations

import hmac
import struct
from typing import Any

from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair, checked_public, hmac_sha256, open_sealed, seal
from e2eebench.protocols.errors import AuthenticationFailed, ConfigError, MalformedMessage, ReplayError
from e2eebench.protocols.framework import Param, Prepared, Scheme, decode_image, register
from e2eebench.protocols.messaging import MessageBody
from e2eebench.server.database import KnownHashDatabase
from e2eebench.server.index import closest_within, get_index

FRANK_KEY_BYTES = 32
COMMIT_BYTES = 32
STAMP_BYTES = 8 + 32
REPORT_MAGIC = b"FRR1"
BUNDLE_MAGIC = b"FRB1"  # the device bundle: the provider's report public key
REPORT_LABEL = "franking-report"
REPORT_INFO = b"e2eebench franking report v1"
ACK = b"\x00"


def commitment(kf: bytes, body: bytes) -> bytes:
    if len(kf) != FRANK_KEY_BYTES:  # a fixed key length keeps HMAC binding (no padded-key collisions)
        raise MalformedMessage(f"franking key must be {FRANK_KEY_BYTES} bytes, got {len(kf)}")
    return hmac_sha256(kf, body)


def _tag_input(c: bytes, sender: str, recipient: str, ts: int) -> bytes:
    s, r = sender.encode(), recipient.encode()
    return b"e2eebench franking v1" + c + bytes([len(s)]) + s + bytes([len(r)]) + r + struct.pack(">Q", ts)


def encode_report(body: bytes, kf: bytes, sender: str, recipient: str, stamp: bytes) -> bytes:
    return wire.pack(REPORT_MAGIC, [body, kf, sender.encode(), recipient.encode(), stamp])


def seal_report(report_key: bytes, report: bytes, ctx: MessageContext) -> bytes:
    """HPKE Base mode to the provider's report key, bound to the message's account and id."""
    return seal(report_key, report, info=REPORT_INFO, ad=ctx.binding(), random_bytes=ctx.random_bytes)


@register
class UserReportFranking(Scheme):
    name = "user-report-franking"
    family = "baseline"
    eu_category = "baseline"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    verdict_to = "provider, on a recipient's report"
    leakage = {PROVIDER: ("image",), RECIPIENT: ("verdict",), "observer": ("verdict",)}
    leakage_text = {PROVIDER: "each message a recipient reports (its image, hash and verdict); nothing of "
                              "unreported messages",
                    RECIPIENT: "its own report decision only (the person judges; the acknowledgement is "
                               "constant)",
                    "observer": "that a report was sent (an extra flight), which correlates with the match bit "
                                "at the assumed report rate"}
    trust = ("recipients (detection happens only if they report); the provider learns reported "
             "messages only, and cannot forge what a sender committed to")
    matching = "fuzzy"
    description = ("Message franking: per-message HMAC commitment in the envelope, provider tag at relay; "
                   "a recipient's report, sealed to the provider, is verified, then matched against the list. "
                   "With false_report_rate 0 (assumed) every report is of a known image, so the provider sees no "
                   "reported content off the list: a consequence of the assumed user model, not of the protocol")
    params = (
        Param("report_rate", 0.1, "share of received known images a recipient reports (assumed)", type=float),
        Param("false_report_rate", 0.0, "share of other received images a recipient reports (assumed; at 0 "
              "the provider never sees a reported image off the list, by assumption)", type=float),
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for k in ("report_rate", "false_report_rate"):
            if not 0.0 <= self.p[k] <= 1.0:
                raise ConfigError(f"parameter {k!r} must be within 0..1, got {self.p[k]}")

    # -- setup -------------------------------------------------------------------------------
    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        hs = db.hashes_for(self.hasher.name)
        key = ctx.random_bytes(32)
        keys = KeyPair.generate(ctx.random_bytes)
        return {"key": key, "report_keys": keys, "ts": 0, "reported": set(), "ids": db.ids,
                "index": get_index("mih", hs, threshold=self.threshold) if len(hs) else None}, \
            wire.pack(BUNDLE_MAGIC, [keys.public_bytes])

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        (key,) = wire.unpack(BUNDLE_MAGIC, bundle, 1, "user-report-franking bundle")
        if len(key) != 32:
            raise MalformedMessage(f"the provider's report key must be 32 bytes, got {len(key)}")
        return {"account": account, "report_key": checked_public(key, "provider report key")}

    # -- sender ------------------------------------------------------------------------------
    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        return Prepared(b"")  # the commitment needs the encoded body: device_seal

    def device_seal(self, state: Any, body: bytes, prepared: Prepared | None,
                    ctx: MessageContext) -> tuple[bytes, bytes]:
        kf = ctx.random_bytes(FRANK_KEY_BYTES)
        return commitment(kf, body), kf

    # -- provider at relay time ------------------------------------------------------------------
    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if len(payload) != COMMIT_BYTES:
            raise MalformedMessage(f"franking commitment must be {COMMIT_BYTES} bytes, got {len(payload)}")

    def provider_stamp(self, state: Any, envelope: Any, ctx: MessageContext) -> bytes:
        state["ts"] += 1
        ts = state["ts"]
        tag = hmac_sha256(state["key"], _tag_input(envelope.payload, envelope.sender, envelope.recipient, ts))
        return struct.pack(">Q", ts) + tag

    # -- recipient -------------------------------------------------------------------------------
    def recipient_receive(self, state: Any, delivered: Any, ctx: MessageContext) -> None:
        kf, c = delivered.sealed, delivered.payload
        if len(delivered.stamp) != STAMP_BYTES:
            raise MalformedMessage("franked message arrived without a provider stamp")
        if len(c) != COMMIT_BYTES or not hmac.compare_digest(commitment(kf, delivered.body), c):
            raise AuthenticationFailed("message does not open its franking commitment")
        if not MessageBody.decode(delivered.body).image:
            return
        judged = bool(ctx.extra.get("recipient_judges_abusive", False))
        rate = self.p["report_rate"] if judged else self.p["false_report_rate"]
        report = bool(ctx.rng.random() < rate)
        ctx.learn(RECIPIENT, "report-decision", report)
        if report:
            report_bytes = encode_report(delivered.body, kf, delivered.sender, state["account"], delivered.stamp)
            ctx.call(RECIPIENT, PROVIDER, REPORT_LABEL, seal_report(state["report_key"], report_bytes, ctx))

    # -- provider, on a report -------------------------------------------------------------------
    def provider_answer(self, state: Any, label: str, request: bytes, ctx: MessageContext) -> bytes:
        if label != REPORT_LABEL:
            raise MalformedMessage(f"{self.name} answers only {REPORT_LABEL!r}, not {label!r}")
        opened = open_sealed(state["report_keys"], request, info=REPORT_INFO, ad=ctx.binding())
        body, kf, sender, recipient, stamp = wire.unpack(REPORT_MAGIC, opened, 5, "franking report")
        if len(stamp) != STAMP_BYTES:
            raise MalformedMessage("franking report: stamp has the wrong length")
        try:
            s, r = sender.decode(), recipient.decode()
        except UnicodeDecodeError:
            raise MalformedMessage("franking report: party ids are not UTF-8") from None
        (ts,) = struct.unpack(">Q", stamp[:8])
        expect = hmac_sha256(state["key"], _tag_input(commitment(kf, body), s, r, ts))
        if not hmac.compare_digest(expect, stamp[8:]):
            raise AuthenticationFailed("franking report does not verify (forged or altered)")
        if ts in state["reported"]:
            raise ReplayError(f"message stamped {ts} was already reported")
        state["reported"].add(ts)
        decoded = MessageBody.decode(body)
        ctx.learn(PROVIDER, "report", {"sender": s, "reporter": r, "ts": ts})
        if decoded.image:
            ctx.learn(PROVIDER, "image", decoded.image)
            h = self.hasher.hash(decode_image(decoded.image))
            ctx.learn(PROVIDER, "hash", h.tobytes())
            hit = closest_within(state["index"], h, self.threshold)
            ctx.verdict(PROVIDER, hit is not None)
            if hit is not None:
                ctx.learn(PROVIDER, "match", {"entry": state["ids"][hit[0]], "distance": hit[1]})
        return ACK

    # -- conformance ------------------------------------------------------------------------------
    def reference_verdict(self, db: KnownHashDatabase, image: Image.Image, ledger: Any, message_id: str) -> bool:
        """Detected exactly when the list matches the image AND its recipient chose to report it."""
        reported = any(x.value for x in ledger.learned_by(RECIPIENT, "report-decision") if x.message_id == message_id)
        return reported and self.plaintext_verdict(db, image)
