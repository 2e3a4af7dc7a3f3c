"""The provider's relay and prekey directory.

The relay receives envelopes, runs the scheme's provider role and forwards. For end-to-end
encrypted schemes it forwards the envelope untouched (it cannot read the body), hands only the
detection payload to the scheme, and delivers beside the envelope whatever the scheme stamps on
it at relay time (a franking tag; nothing for most schemes). For the non-E2EE baseline it
terminates the transport session, hands the body to the scheme, and re-encrypts the message
to the recipient.

The prekey directory stores each account's published prekey bundle and serves it with at most
one one-time prekey, which it then deletes (X3DH, section 3.2); devices reach it through the
channel, so bundle bytes are counted.
"""
from __future__ import annotations

from typing import Any

from e2eebench.protocols.channel import PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.errors import MalformedMessage, ProtocolError
from e2eebench.protocols.framework import Scheme
from e2eebench.protocols.messaging import (MODE_TRANSPORT, Delivery, Identity, Mailbox, MessageBody, PrekeyBundle,
                                           parse_envelope)


class PrekeyStore:
    """The provider's directory of prekey bundles."""

    def __init__(self) -> None:
        self._bundles: dict[str, PrekeyBundle] = {}

    def publish(self, data: bytes) -> str:
        """Store a published bundle (signature and keys checked on decode); returns its account."""
        bundle = PrekeyBundle.decode(data)
        self._bundles[bundle.name] = bundle
        return bundle.name

    def serve(self, name: str) -> bytes:
        b = self._bundles.get(name)
        if b is None:
            raise ProtocolError(f"no prekey bundle published for {name!r}")
        served = PrekeyBundle(b.name, b.ik, b.sig_key, b.spk_id, b.spk, b.spk_sig, b.opks[:1])
        self._bundles[name] = PrekeyBundle(b.name, b.ik, b.sig_key, b.spk_id, b.spk, b.spk_sig, b.opks[1:])
        return served.encode()


class Relay:
    def __init__(self, scheme: Scheme, state: Any, identity: Identity, prekeys: PrekeyStore):
        self.scheme, self.state = scheme, state
        self.prekeys = prekeys
        prekeys.publish(identity.bundle())
        self.mailbox = Mailbox(identity, prekeys.serve)  # the provider's own directory: no wire to cross

    def handle(self, data: bytes, ctx: MessageContext) -> Delivery:
        """Process one envelope from a device; returns what is delivered to the recipient."""
        with ctx.role(PROVIDER):
            env = parse_envelope(data)
            stamp = b""
            if env.mode == MODE_TRANSPORT:
                d = self.mailbox.open(data)
                recipient, sep, body = d.body.partition(b"\x00")
                if not sep:
                    raise MalformedMessage("transport body lacks a recipient")
                ctx.opened(PROVIDER, "transport body", body)
                decoded = MessageBody.decode(body)
                self.scheme.provider_receive(self.state, d.payload, ctx, body=decoded)
                session = self.mailbox.session_to(recipient.decode(), mode=MODE_TRANSPORT,
                                                  random_bytes=ctx.random_bytes)
                out = session.encrypt(body)
            else:
                if self.scheme.e2ee is False:
                    raise MalformedMessage("this scheme expects transport-encrypted envelopes")
                self.scheme.provider_receive(self.state, env.payload, ctx, body=None)
                stamp = self.scheme.provider_stamp(self.state, env, ctx)
                out = data
        ctx.send(PROVIDER, RECIPIENT, "deliver", out)
        if stamp:
            ctx.send(PROVIDER, RECIPIENT, "deliver:stamp", stamp)
        return Delivery(out, stamp)
