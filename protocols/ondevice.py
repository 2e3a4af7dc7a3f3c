"""On-device schemes: all detection on the device ("device-related" in the EU mapping).

``on-device-list``: the device bundle is the plain hash list (with the provider's report
key and the list's root digest, which the device recomputes so it can tell it holds the
same list as everyone else). The device hashes each image before encryption and scans
the list at the hasher's threshold. On a match, depending on ``action``:

- ``report`` (default): the device seals a report (matched list entry, distance, message
  id) to the provider's key and attaches it as the detection payload; otherwise the
  payload is empty, so the provider learns nothing about non-matching images.
- ``block``: the device refuses to send; nothing reaches the provider ("upload prevention").
- ``warn``: the user is told and the message goes out without a report.

Whatever the action, the device holds the list: an offline membership oracle and
``db_exposure_bits`` = the whole list.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import hamming
from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import AuthenticationFailed, MalformedMessage
from e2eebench.protocols.framework import ACTION_PARAM, Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase, merkle_root

REPORT_INFO = b"e2eebench on-device report v1"


class _OnDeviceBase(Scheme):
    """Shared report plumbing: sealing a report to the provider, acting on a match."""

    family = "on-device"
    eu_category = "device"
    parties = (DEVICE, PROVIDER, RECIPIENT)

    @property
    def detector(self) -> str:
        return PROVIDER if self.p.get("action", "report") == "report" else DEVICE

    def _report_keys(self, ctx: MessageContext) -> KeyPair:
        return KeyPair.generate(ctx.random_bytes)

    def _act(self, state: dict, match: bool, report: dict, ctx: MessageContext) -> Prepared:
        ctx.verdict(DEVICE, match)
        action = self.p["action"]
        if not match:
            return Prepared(b"")
        if action == "block":
            return Prepared(b"", send=False, notice="blocked: matches the known list")
        if action == "warn":
            return Prepared(b"", notice="warning: matches the known list")
        blob = json.dumps({**report, "message": ctx.message_id, "account": ctx.account},
                          sort_keys=True).encode()
        return Prepared(seal(state["report_key"], blob, info=REPORT_INFO,
                             ad=ctx.account.encode(), random_bytes=ctx.random_bytes))

    def _open_report(self, keys: KeyPair, payload: bytes, ctx: MessageContext) -> None:
        if not payload:
            return
        blob = open_sealed(keys, payload, info=REPORT_INFO, ad=ctx.account.encode())
        try:
            report = json.loads(blob)
        except ValueError:
            raise MalformedMessage("report does not parse") from None
        if report.get("message") != ctx.message_id or report.get("account") != ctx.account:
            raise AuthenticationFailed("report belongs to another message or account (replayed)")
        ctx.learn(PROVIDER, "report", report)
        ctx.verdict(PROVIDER, True)


@register
class OnDeviceList(_OnDeviceBase):
    name = "on-device-list"
    verdict_to = "device; provider on report"
    trust = "device software (honest client) and the list shipped to every device"
    matching = "fuzzy"
    description = "Plain hash list on the device, fuzzy match at the hasher threshold, sealed report on match"
    params = (ACTION_PARAM,)

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        keys = self._report_keys(ctx)
        hs = db.hashes_for(self.hasher.name)
        root = merkle_root([h.tobytes() for h in hs])
        bundle = wire.pack(b"ODL1", [self.hasher.name.encode(), wire.u32(self.threshold),
                                     keys.public_bytes, root, wire.hashes_to_bytes(hs)])
        return {"keys": keys}, bundle

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        name, thr, key, root, blob = wire.unpack(b"ODL1", bundle, 5, "on-device-list bundle")
        if name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage(f"bundle is for hasher {name!r}, device uses {self.hasher.name}")
        hs = wire.bytes_to_hashes(blob, self.hasher.nbytes)
        if merkle_root([h.tobytes() for h in hs]) != root:
            raise AuthenticationFailed("bundle's list does not match its root digest")
        ctx.learn(DEVICE, "database", len(hs))
        return {"hashes": hs, "threshold": wire.read_u32(thr), "report_key": key, "root": root}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        h = self.hasher.hash(image)
        d = hamming(state["hashes"], h) if len(state["hashes"]) else np.array([], int)
        match = bool(len(d) and d.min() <= state["threshold"])
        report = {"entry": int(d.argmin()), "distance": int(d.min())} if match else {}
        return self._act(state, match, report, ctx)

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        self._open_report(state["keys"], payload, ctx)
