"""``enclave``: plaintext matching inside a secure enclave at the provider — MODELLED.

EU mapping: "server-related: secure enclave". The device seals its hash to a key that,
in a deployment, only attested enclave code would hold; the provider forwards the sealed
hash to its enclave, which opens it, scans the list and releases only the verdict.

What is real here: the sealing (X25519 + HKDF + AES-256-GCM), the bytes, the matching and
its CPU time. What is *modelled, not measured*: the enclave's isolation and attestation.
There is no TEE on this machine; the "enclave" is a party in the same process, and the
privacy claim (the provider learns only the verdict) holds only if the hardware isolation,
the attestation chain and side-channel resistance hold. Every measurement of this scheme is
labelled ``modelled``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, ENCLAVE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import MalformedMessage, ReplayError
from e2eebench.protocols.framework import Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase
from e2eebench.server.index import closest_within, get_index

INFO = b"e2eebench enclave sealed hash v1"


@register
class Enclave(Scheme):
    name = "enclave"
    family = "modelled"
    eu_category = "server"
    parties = (DEVICE, PROVIDER, ENCLAVE, RECIPIENT)
    verdict_to = "provider's enclave, then provider"
    leakage = {ENCLAVE: ("hash",), PROVIDER: ("verdict",)}
    leakage_text = {ENCLAVE: "every image's hash (trusted hardware)", PROVIDER: "the verdict per image message"}
    trust = "enclave hardware, attestation and side-channel resistance (modelled, not measured)"
    matching = "fuzzy"
    modelled = True
    description = "Sealed hash opened and matched inside a provider enclave (isolation modelled, not measured)"

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        with ctx.role(ENCLAVE):
            keys = KeyPair.generate(ctx.random_bytes)
            quote = ctx.send(ENCLAVE, PROVIDER, "attestation (modelled)", keys.public_bytes)
        got = ctx.send(PROVIDER, ENCLAVE, "list", wire.hashes_to_bytes(db.hashes_for(self.hasher.name)))
        with ctx.role(ENCLAVE):  # the enclave indexes the list it received
            hs = wire.bytes_to_hashes(got, self.hasher.nbytes, "enclave list") if got else None
            index = get_index("mih", hs, threshold=self.threshold) if hs is not None else None
        return {"keys": keys, "index": index, "seen": set()}, wire.pack(b"ENC1", [quote, self.hasher.name.encode()])

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        key, name = wire.unpack(b"ENC1", bundle, 2, "enclave bundle")
        if len(key) != 32 or name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage("enclave bundle has a bad key or the wrong hasher")
        return {"key": key}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        h = self.hasher.hash(image)
        ad = ctx.binding()
        return Prepared(seal(state["key"], h.tobytes(), info=INFO, ad=ad, random_bytes=ctx.random_bytes))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return  # a text-only message (or a stripped payload: E2EE hides which)
        blob = ctx.send(PROVIDER, ENCLAVE, "sealed hash", payload)
        with ctx.role(ENCLAVE):
            key = (ctx.account, ctx.message_id)
            if key in state["seen"]:
                raise ReplayError("sealed hash for this message was already processed")
            raw = open_sealed(state["keys"], blob, info=INFO, ad=ctx.binding())
            ctx.opened(ENCLAVE, "sealed hash", raw)
            if len(raw) != self.hasher.nbytes:
                raise MalformedMessage("sealed hash has the wrong length")
            state["seen"].add(key)
            h = np.frombuffer(raw, np.uint8)
            ctx.learn(ENCLAVE, "hash", raw)
            match = closest_within(state["index"], h, self.threshold) is not None
            ctx.verdict(ENCLAVE, match)
            verdict = ctx.send(ENCLAVE, PROVIDER, "verdict", b"\x01" if match else b"\x00")
        ctx.verdict(PROVIDER, verdict == b"\x01")
