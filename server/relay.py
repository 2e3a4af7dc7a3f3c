"""The provider's relay: receives envelopes, runs the scheme's provider role, forwards.

For end-to-end encrypted schemes the relay forwards the envelope untouched (it cannot
read the body); it hands only the detection payload to the scheme. For the non-E2EE
baseline it terminates the transport session, hands the body to the scheme, and
re-encrypts the message to the recipient.
"""
from __future__ import annotations

from typing import Any

from e2eebench.protocols.channel import PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.errors import MalformedMessage
from e2eebench.protocols.framework import Scheme
from e2eebench.protocols.messaging import MODE_TRANSPORT, Identity, Mailbox, MessageBody, parse_envelope


class Relay:
    def __init__(self, scheme: Scheme, state: Any, identity: Identity, directory: dict[str, bytes]):
        self.scheme, self.state = scheme, state
        self.mailbox = Mailbox(identity, directory)

    def handle(self, data: bytes, ctx: MessageContext) -> bytes:
        """Process one envelope from a device; returns what is delivered to the recipient."""
        with ctx.role(PROVIDER):
            env = parse_envelope(data)
            if env.mode == MODE_TRANSPORT:
                _, inner, payload = self.mailbox.receive(data)
                recipient, sep, body = inner.partition(b"\x00")
                if not sep:
                    raise MalformedMessage("transport body lacks a recipient")
                decoded = MessageBody.decode(body)
                self.scheme.provider_receive(self.state, payload, ctx, body=decoded)
                session = self.mailbox.session_to(recipient.decode(), mode=MODE_TRANSPORT,
                                                  random_bytes=ctx.random_bytes)
                out = session.encrypt(body)
            else:
                if self.scheme.e2ee is False:
                    raise MalformedMessage("this scheme expects transport-encrypted envelopes")
                self.scheme.provider_receive(self.state, env.payload, ctx, body=None)
                out = data
        ctx.send(PROVIDER, RECIPIENT, "deliver", out)
        return out
