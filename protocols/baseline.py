"""``server-side``: the non-E2EE baseline. The provider reads every image and matches it.

Messages travel under transport encryption to the provider (same ratchet as the E2EE
session, but the provider holds the key), which decrypts, hashes the image, scans the
known list and re-encrypts the message to the recipient. It is the reference point for
effectiveness and the worst case for privacy: the provider learns every image and hash.
"""
from __future__ import annotations

from typing import Any

from PIL import Image

from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.errors import MalformedMessage
from e2eebench.protocols.framework import Prepared, Scheme, decode_image, register
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
