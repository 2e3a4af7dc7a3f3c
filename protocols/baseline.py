"""The EU baseline rows: ``server-side`` (no E2EE), ``e2ee-no-detection`` and ``exceptional-access``.

``server-side``: the non-E2EE baseline. The provider reads every image and matches it.

Messages travel under transport encryption to the provider (same ratchet as the E2EE
session, but the provider holds the key), which decrypts, hashes the image, scans the
known list and re-encrypts the message to the recipient. It is the reference point for
effectiveness and the worst case for privacy: the provider learns every image and hash.
"""
from __future__ import annotations

from typing import Any

from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, ESCROW, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import MalformedMessage, ReplayError
from e2eebench.protocols.framework import Prepared, Scheme, decode_image, register
from e2eebench.protocols.messaging import MessageBody
from e2eebench.server.database import KnownHashDatabase
from e2eebench.server.index import closest_within, get_index


@register
class ServerSide(Scheme):
    name = "server-side"
    family = "baseline"
    eu_category = "baseline"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    verdict_to = "provider"
    leakage = {PROVIDER: ("image",)}
    leakage_text = {PROVIDER: "every image (no end-to-end encryption)"}
    trust = "provider (sees all content; no end-to-end encryption)"
    matching = "fuzzy"
    e2ee = False
    description = "Provider decrypts the transport layer, hashes every image and scans the list"

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        hs = db.hashes_for(self.hasher.name)
        return {"index": get_index("mih", hs, threshold=self.threshold) if len(hs) else None, "ids": db.ids}, b""

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        if bundle:
            raise MalformedMessage("server-side ships no device bundle")
        return None

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        return Prepared(b"")

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if payload:
            raise MalformedMessage("server-side expects no detection payload")
        if body is None or not body.image:
            return
        image = decode_image(body.image)
        ctx.learn(PROVIDER, "image", body.image)
        h = self.hasher.hash(image)
        ctx.learn(PROVIDER, "hash", h.tobytes())
        hit = closest_within(state["index"], h, self.threshold)
        ctx.verdict(PROVIDER, hit is not None)
        if hit is not None:
            ctx.learn(PROVIDER, "report", {"entry": state["ids"][hit[0]], "distance": hit[1]})


@register
class E2EENoDetection(Scheme):
    """The control row: the same end-to-end encrypted messaging with no detection at all.

    Every cost the other schemes add is measured against this row (the EU scale figures subtract
    it), and its effectiveness (nothing is detected) is what end-to-end encryption without
    detection loses."""

    name = "e2ee-no-detection"
    family = "baseline"
    eu_category = "baseline"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    verdict_to = "nobody"
    trust = "none beyond the messaging protocol"
    matching = "none"
    description = "The same E2EE messaging with no detection: the control row, what detection adds is measured against it"
    leakage: dict[str, tuple[str, ...]] = {}   # nothing beyond the messaging protocol's own metadata

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        return None, b""

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        if bundle:
            raise MalformedMessage("e2ee-no-detection ships no device bundle")
        return None

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        return Prepared(b"")

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if payload:
            raise MalformedMessage("e2ee-no-detection expects no payload")


ESCROW_INFO = b"e2eebench exceptional-access escrow copy v1"


@register
class ExceptionalAccess(Scheme):
    """``exceptional-access``: every message is also readable by an escrow authority.

    The "ghost recipient" design: the device seals each message body (text and image, as the
    recipient gets it) to the escrow authority's public key and carries the sealed copy in the
    envelope's payload slot, bound to the account and message; the provider forwards it to the
    escrow, which opens it. No automated verdict: the authority reads content, it does not
    match it. What is real: the sealing (the project's sealed box), the bytes on each leg and
    each party's CPU. What it shows: E2EE with a standing third reader; the provider cannot check
    that the escrow copy equals the body (it cannot read either), so a modified client can send
    the escrow a different body unnoticed."""

    name = "exceptional-access"
    family = "baseline"
    eu_category = "baseline"
    parties = (DEVICE, PROVIDER, ESCROW, RECIPIENT)
    verdict_to = "nobody (no automated verdict); the escrow authority can read every message"
    trust = "the escrow authority and its key (a single key that opens every message)"
    matching = "none"
    description = "Each message body also sealed to an escrow authority's key (ghost recipient); no detection"
    leakage = {ESCROW: ("image",)}   # the escrow authority reads every message body

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        with ctx.role(ESCROW):
            keys = KeyPair.generate(ctx.random_bytes)
            published = ctx.send(ESCROW, PROVIDER, "escrow key", keys.public_bytes)
        return {"escrow": keys, "seen": set()}, wire.pack(b"ESC1", [published])

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        (key,) = wire.unpack(b"ESC1", bundle, 1, "exceptional-access bundle")
        if len(key) != 32:
            raise MalformedMessage("exceptional-access bundle has a bad escrow key")
        return {"key": key}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        return Prepared(b"")  # the escrow copy is made from the whole body in device_seal

    def device_seal(self, state: Any, body: bytes, prepared: Prepared | None,
                    ctx: MessageContext) -> tuple[bytes, bytes]:
        """Every message, text or image: the body sealed to the escrow key rides as the payload."""
        copy = seal(state["key"], body, info=ESCROW_INFO, ad=ctx.binding(), random_bytes=ctx.random_bytes)
        return copy, b""

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            raise MalformedMessage("exceptional-access message carries no escrow copy")
        copy = ctx.send(PROVIDER, ESCROW, "escrow copy", payload)
        with ctx.role(ESCROW):
            key = (ctx.account, ctx.message_id)
            if key in state["seen"]:
                raise ReplayError("escrow copy for this message was already received")
            content = MessageBody.decode(open_sealed(state["escrow"], copy, info=ESCROW_INFO, ad=ctx.binding()))
            state["seen"].add(key)
            if content.image:
                ctx.learn(ESCROW, "image", content.image)
            if content.text:
                ctx.learn(ESCROW, "text", content.text)
