"""The messenger app on a user's device: compose, run the scheme's device role, encrypt, send;
and, on the receiving side, decrypt and run the scheme's recipient role.

The app does not know which images are known; it only runs the scheme it was given over the
images its user sends, and attaches what the scheme returns to the envelope. Sessions start
from prekey bundles fetched from the provider's directory over the channel (in their own
exchange, ``session:<message id>``, so they are counted but not charged to detection).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from PIL import Image

from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.framework import Prepared, Scheme
from e2eebench.protocols.messaging import (DEFAULT_PREKEYS, MODE_TRANSPORT, SPK_ROTATE_SESSIONS, Delivered, Delivery,
                                           Identity, Mailbox, MessageBody)


class PrekeyDirectory(Protocol):
    """The provider's prekey directory as a device reaches it (server.relay.PrekeyStore)."""

    def publish(self, data: bytes) -> str: ...

    def serve(self, name: str) -> bytes: ...

    def remaining(self, name: str) -> int: ...


def encode_png(image: Image.Image) -> bytes:
    """Lossless encoding, so what the recipient (or a baseline provider) decodes is what was hashed."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


@dataclass
class Sent:
    envelope: bytes | None
    body: bytes
    prepared: Prepared | None
    payload: bytes = b""


class Messenger:
    """One account's app: its identity, sessions, the scheme's device state."""

    def __init__(self, identity: Identity, prekeys: PrekeyDirectory, scheme: Scheme, scheme_state: Any,
                 provider_name: str = PROVIDER, identities: Mapping[str, bytes] | None = None):
        """``identities``: the public identities (IK || signing key) this user has verified, by
        account; without it, peers are pinned on first contact."""
        self.identity = identity
        self.directory = prekeys
        self._ctx: MessageContext | None = None
        self.mailbox = Mailbox(identity, self._fetch_bundle, directory=identities)
        self.scheme, self.state = scheme, scheme_state
        self.provider_name = provider_name

    @property
    def account(self) -> str:
        return self.identity.name

    def register(self, ctx: MessageContext) -> None:
        """Publish this device's prekey bundle to the provider (counted on the channel)."""
        data = ctx.send(DEVICE, PROVIDER, "prekeys:publish", self.identity.bundle())
        with ctx.role(PROVIDER):
            self.directory.publish(data)

    def _fetch_bundle(self, peer: str) -> bytes:
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("a session is started only while sending")
        with ctx.channel.exchange(f"session:{ctx.message_id}"):
            name = ctx.send(DEVICE, PROVIDER, "prekeys:request", peer.encode())
            with ctx.role(PROVIDER):
                bundle = self.directory.serve(name.decode())
            return ctx.send(PROVIDER, DEVICE, "prekeys:bundle", bundle)

    def send(self, recipient: str, ctx: MessageContext, *, text: str = "",
             image: Image.Image | None = None, image_bytes: bytes | None = None) -> Sent:
        """Compose and send one message; returns the envelope put on the wire (None if blocked)."""
        with ctx.role(DEVICE):
            prepared = None
            if image is not None:
                prepared = self.scheme.device_prepare(self.state, image, ctx)
                if not prepared.send:
                    return Sent(None, b"", prepared)
                if image_bytes is None:
                    image_bytes = encode_png(image)
            body = MessageBody(text, image_bytes or b"").encode()
            payload, sealed = self.scheme.device_seal(self.state, body, prepared, ctx)
            self._ctx = ctx
            try:
                if self.scheme.e2ee:
                    session = self.mailbox.session_to(recipient, random_bytes=ctx.random_bytes)
                    env = session.encrypt(body, payload, sealed)
                else:
                    session = self.mailbox.session_to(self.provider_name, mode=MODE_TRANSPORT,
                                                      random_bytes=ctx.random_bytes)
                    # transport mode: the recipient's name travels inside the body for the provider
                    env = session.encrypt(recipient.encode() + b"\x00" + body, payload, sealed)
            finally:
                self._ctx = None
        ctx.send(DEVICE, PROVIDER, "envelope", env)
        return Sent(env, body, prepared, payload)

    def receive(self, delivery: Delivery | bytes, ctx: MessageContext | None = None) -> tuple[str, bytes]:
        """Open a delivered envelope; with a context, the scheme's recipient role runs on it."""
        if isinstance(delivery, (bytes, bytearray)):
            delivery = Delivery(bytes(delivery))
        d: Delivered = self.mailbox.open(delivery.envelope, delivery.stamp)
        if ctx is not None:
            with ctx.role(RECIPIENT):
                self.scheme.recipient_receive(self.state, d, ctx)
            self._refresh_prekeys(delivery, ctx)
        return d.sender, d.body

    def _refresh_prekeys(self, delivery: Delivery, ctx: MessageContext) -> None:
        """Top up one-time prekeys when the provider asked, and rotate the signed prekey after
        ``SPK_ROTATE_SESSIONS`` answered sessions; both publishes are counted like the first."""
        updates = []
        with ctx.role(RECIPIENT):
            if delivery.prekeys_left is not None:
                updates.append(self.identity.add_prekeys(DEFAULT_PREKEYS - delivery.prekeys_left, ctx.random_bytes))
            if self.identity.answered >= SPK_ROTATE_SESSIONS:
                updates.append(self.identity.rotate_spk(ctx.random_bytes))
        if not updates:
            return
        with ctx.channel.exchange(f"prekeys:{ctx.message_id}"):
            for data in updates:
                data = ctx.send(RECIPIENT, PROVIDER, "prekeys:publish", data)
                with ctx.role(PROVIDER):
                    self.directory.publish(data)
