"""The provider's relay and prekey directory.

The relay receives envelopes, runs the scheme's provider role and forwards. For end-to-end
encrypted schemes it forwards the envelope untouched (it cannot read the body), hands only the
detection payload to the scheme, and delivers beside the envelope whatever the scheme stamps on
it at relay time (a franking tag; nothing for most schemes). For the non-E2EE baseline it
terminates the transport session, hands the body to the scheme, and re-encrypts the message
to the recipient.

The prekey directory stores each account's published prekey bundle and serves it with at most
one one-time prekey, which it then deletes (X3DH, section 3.2); devices reach it through the
channel, so bundle bytes are counted. When fewer than ``LOW_PREKEYS`` one-time prekeys remain
for a recipient, the relay says so beside the delivery (``prekeys:low``) and the device
publishes more; the provider's own identity (transport sessions) tops up and rotates in place.
"""
from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

from e2eebench.protocols.channel import PROVIDER, RECIPIENT, MessageContext
from e2eebench.protocols.errors import IdentityMismatch, MalformedMessage, ProtocolError, ReplayError
from e2eebench.protocols.framework import Scheme
from e2eebench.protocols.messaging import (DEFAULT_PREKEYS, LOW_PREKEYS, MODE_TRANSPORT, SPK_ROTATE_SESSIONS, Delivery,
                                           Identity, Mailbox, MessageBody, PrekeyBundle, parse_envelope)


class PrekeyStore:
    """The provider's directory of prekey bundles.

    The provider pins an account's identity (IK || signing key) at its first publish and refuses
    a bundle for that account under any other identity (:class:`IdentityMismatch`). In a real
    service the provider authenticates the account by its connection (registration, a login
    credential); the simulation has no connections, so this pinning stands for it. A later
    publish under the pinned identity adds one-time prekeys and may replace the signed prekey
    with a newer one (rotation); it never removes a one-time prekey not yet served.
    """

    def __init__(self) -> None:
        self._bundles: dict[str, PrekeyBundle] = {}
        self.identities: dict[str, bytes] = {}

    def publish(self, data: bytes) -> str:
        """Store a published bundle (signature and keys checked on decode); returns its account."""
        b = PrekeyBundle.decode(data)
        pinned = self.identities.setdefault(b.name, b.identity)
        if pinned != b.identity:
            raise IdentityMismatch(f"a bundle for {b.name!r} under an identity other than the account's")
        old = self._bundles.get(b.name)
        if old is not None:
            if b.spk_id < old.spk_id:
                raise ReplayError(f"signed prekey {b.spk_id} for {b.name!r} is older than the published one")
            known = {i for i, _ in old.opks}
            b = replace(b, opks=old.opks + tuple(o for o in b.opks if o[0] not in known))
        self._bundles[b.name] = b
        return b.name

    def remaining(self, name: str) -> int:
        """One-time prekeys the provider still holds for ``name``."""
        b = self._bundles.get(name)
        return len(b.opks) if b is not None else 0

    def serve(self, name: str) -> bytes:
        b = self._bundles.get(name)
        if b is None:
            raise ProtocolError(f"no prekey bundle published for {name!r}")
        self._bundles[name] = replace(b, opks=b.opks[1:])
        return replace(b, opks=b.opks[:1]).encode()


class Relay:
    def __init__(self, scheme: Scheme, state: Any, identity: Identity, prekeys: PrekeyStore):
        self.scheme, self.state = scheme, state
        self.prekeys = prekeys
        prekeys.publish(identity.bundle())
        # the provider's own directory: no wire to cross; the identities it pinned are authoritative
        self.mailbox = Mailbox(identity, prekeys.serve, directory=prekeys.identities)
        self.identity = identity

    def handle(self, data: bytes, ctx: MessageContext) -> Delivery:
        """Process one envelope from a device; returns what is delivered to the recipient."""
        with ctx.role(PROVIDER):
            env = parse_envelope(data)
            stamp = b""
            if env.mode == MODE_TRANSPORT:
                if self.scheme.e2ee:
                    raise MalformedMessage(f"{self.scheme.name} is end-to-end encrypted: "
                                           "a transport-mode envelope is refused")
                d = self.mailbox.open(data)
                self._refresh_own_prekeys(ctx)
                recipient, body = self._recipient(d.body)
                ctx.opened(PROVIDER, "transport body", body)
                decoded = MessageBody.decode(body)
                self.scheme.provider_receive(self.state, d.payload, ctx, body=decoded)
                session = self.mailbox.session_to(recipient, mode=MODE_TRANSPORT,
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
        recipient_name = parse_envelope(out).recipient
        left = self.prekeys.remaining(recipient_name)
        if left < LOW_PREKEYS:  # messaging's own cost, in its own exchange: ask for more one-time prekeys
            with ctx.channel.exchange(f"prekeys:{ctx.message_id}"):
                ctx.send(PROVIDER, RECIPIENT, "prekeys:low", struct.pack(">H", left))
            return Delivery(out, stamp, left)
        return Delivery(out, stamp)

    def _refresh_own_prekeys(self, ctx: MessageContext) -> None:
        """The provider's own identity (transport sessions) tops up and rotates like a device's."""
        me = self.identity
        if self.prekeys.remaining(me.name) < LOW_PREKEYS:
            self.prekeys.publish(me.add_prekeys(DEFAULT_PREKEYS, ctx.random_bytes))
        if me.answered >= SPK_ROTATE_SESSIONS:
            self.prekeys.publish(me.rotate_spk(ctx.random_bytes))

    @staticmethod
    def _recipient(inner: bytes) -> tuple[str, bytes]:
        """The recipient and body of a transport body (``id 0x00 body``); garbled bytes from an
        authenticated sender are still untrusted: MalformedMessage (an unknown recipient is a
        ProtocolError when its prekeys are asked for)."""
        raw, sep, body = inner.partition(b"\x00")
        if not sep:
            raise MalformedMessage("transport body lacks a recipient")
        try:
            recipient = raw.decode()
        except UnicodeDecodeError:
            raise MalformedMessage("transport body's recipient is not UTF-8") from None
        if recipient == PROVIDER:
            raise MalformedMessage("transport body names the provider as its recipient")
        return recipient, body
