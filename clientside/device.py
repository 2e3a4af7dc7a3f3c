"""The messenger app on a user's device: compose, run the scheme's device role, encrypt, send.

The app does not know which images are known; it only runs the scheme it was given
over the images its user sends, and attaches what the scheme returns to the envelope.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from e2eebench.protocols.channel import DEVICE, PROVIDER, MessageContext
from e2eebench.protocols.framework import Prepared, Scheme
from e2eebench.protocols.messaging import MODE_TRANSPORT, Identity, Mailbox, MessageBody


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


class Messenger:
    """One account's app: its identity, sessions, the scheme's device state."""

    def __init__(self, identity: Identity, directory: dict[str, bytes], scheme: Scheme,
                 scheme_state: Any, provider_name: str = PROVIDER):
        self.identity = identity
        self.mailbox = Mailbox(identity, directory)
        self.scheme, self.state = scheme, scheme_state
        self.provider_name = provider_name

    @property
    def account(self) -> str:
        return self.identity.name

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
            payload = prepared.payload if prepared else b""
            if self.scheme.e2ee:
                session = self.mailbox.session_to(recipient, random_bytes=ctx.random_bytes)
                env = session.encrypt(body, payload)
            else:
                session = self.mailbox.session_to(self.provider_name, mode=MODE_TRANSPORT,
                                                  random_bytes=ctx.random_bytes)
                # transport mode: the recipient's name travels inside the body for the provider
                env = session.encrypt(recipient.encode() + b"\x00" + body, payload)
        ctx.send(DEVICE, PROVIDER, "envelope", env)
        return Sent(env, body, prepared)

    def receive(self, data: bytes) -> tuple[str, bytes]:
        sender, body, _ = self.mailbox.receive(data)
        return sender, body
