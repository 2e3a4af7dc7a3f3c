"""Detection payloads of one fixed size whatever the verdict (on-device and client-learns schemes).

The envelope's detection payload is delivered to the recipient with the message (it is bound
to the ciphertext as associated data) and crosses every link in the clear. A payload attached
only on a match, or whose length depends on the report, tells the recipient and any network
observer the verdict. So a device attaches a sealed payload to *every* image message: a report
on a match, a cover on no match, both padded to ``size`` plaintext bytes *under* the AEAD, so
the sealed bytes have one length and are indistinguishable to anyone without the provider's
key. The provider opens every payload and learns the verdict it was meant to learn, no more.

Plaintext: 4-byte big-endian length L, L bytes of JSON ``{"account", "message", "report"}``
(``report`` is null for a cover), zero padding to ``size``. Sealed to the provider's report
key with the account as associated data (as :mod:`sealed_report` does).
"""
from __future__ import annotations

import json
from typing import Any

from e2eebench.protocols.channel import PROVIDER, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import AuthenticationFailed, MalformedMessage


def seal_fixed(provider_key: bytes, report: dict[str, Any] | None, ctx: MessageContext, info: bytes,
               size: int) -> bytes:
    """A report (or, with ``report=None``, a cover) padded to ``size`` bytes and sealed."""
    body = json.dumps({"account": ctx.account, "message": ctx.message_id, "report": report},
                      sort_keys=True).encode()
    if len(body) + 4 > size:
        raise ValueError(f"report of {len(body)} bytes does not fit the fixed {size}-byte payload")
    plain = len(body).to_bytes(4, "big") + body + bytes(size - 4 - len(body))
    return seal(provider_key, plain, info=info, ad=ctx.account.encode(), random_bytes=ctx.random_bytes)


def open_fixed(keys: KeyPair, payload: bytes, ctx: MessageContext, info: bytes, size: int) -> dict | None:
    """Open a fixed-size payload: records the plaintext in the provider's view and its verdict;
    returns the report, or None for a cover (or a text-only message without a payload)."""
    if not payload:
        return None
    plain = open_sealed(keys, payload, info=info, ad=ctx.account.encode())
    ctx.opened(PROVIDER, "detection payload", plain)
    n = int.from_bytes(plain[:4], "big") if len(plain) == size else -1
    if not 0 <= n <= size - 4 or any(plain[4 + n:]):
        raise MalformedMessage(f"detection payload is not a {size}-byte padded report")
    try:
        doc = json.loads(plain[4:4 + n])
    except ValueError:
        raise MalformedMessage("detection payload does not parse") from None
    if not isinstance(doc, dict) or doc.get("message") != ctx.message_id or doc.get("account") != ctx.account:
        raise AuthenticationFailed("detection payload belongs to another message or account (replayed)")
    report = doc.get("report")
    if report is None:
        ctx.verdict(PROVIDER, False)
        return None
    if not isinstance(report, dict):
        raise MalformedMessage("detection payload's report is not a JSON object")
    ctx.learn(PROVIDER, "report", report)
    ctx.verdict(PROVIDER, True)
    return report
