"""The report a device seals to the provider when it finds a match (on-device and client-learns schemes).

A report is JSON sealed with HPKE (RFC 9180, Base mode) to the provider's report key, with the
message's binding (account and message id, ``MessageContext.binding``) as associated data, so a
report replayed into another message or account does not open; it also names its message and
account inside the JSON, which the provider checks again after opening.
"""
from __future__ import annotations

import json
from typing import Any

from e2eebench.protocols.channel import PROVIDER, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import AuthenticationFailed, MalformedMessage


def seal_report(provider_key: bytes, report: dict[str, Any], ctx: MessageContext, info: bytes) -> bytes:
    blob = json.dumps({**report, "message": ctx.message_id, "account": ctx.account}, sort_keys=True).encode()
    return seal(provider_key, blob, info=info, ad=ctx.binding(), random_bytes=ctx.random_bytes)


def open_report(keys: KeyPair, payload: bytes, ctx: MessageContext, info: bytes) -> dict[str, Any] | None:
    """Open a report (records it and a positive verdict for the provider); empty payload: nothing."""
    if not payload:
        return None
    blob = open_sealed(keys, payload, info=info, ad=ctx.binding())
    try:
        report = json.loads(blob)
    except ValueError:
        raise MalformedMessage("report does not parse") from None
    if not isinstance(report, dict) or report.get("message") != ctx.message_id or report.get("account") != ctx.account:
        raise AuthenticationFailed("report belongs to another message or account (replayed)")
    ctx.learn(PROVIDER, "report", report)
    ctx.verdict(PROVIDER, True)
    return report
