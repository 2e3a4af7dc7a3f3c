"""The report a device seals to the provider when it finds a match (on-device and client-learns schemes).

A report is JSON sealed HPKE-style to the provider's report key, with the account as
associated data; it names its message and account, so the provider rejects a report
replayed into another message or account.
"""
from __future__ import annotations

import json
from typing import Any

from e2eebench.protocols.channel import PROVIDER, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import AuthenticationFailed, MalformedMessage


def seal_report(provider_key: bytes, report: dict[str, Any], ctx: MessageContext, info: bytes) -> bytes:
    blob = json.dumps({**report, "message": ctx.message_id, "account": ctx.account}, sort_keys=True).encode()
    return seal(provider_key, blob, info=info, ad=ctx.account.encode(), random_bytes=ctx.random_bytes)


def open_report(keys: KeyPair, payload: bytes, ctx: MessageContext, info: bytes) -> dict[str, Any] | None:
    """Open a report (records it and a positive verdict for the provider); empty payload: nothing."""
    if not payload:
        return None
    blob = open_sealed(keys, payload, info=info, ad=ctx.account.encode())
    try:
        report = json.loads(blob)
    except ValueError:
        raise MalformedMessage("report does not parse") from None
    if not isinstance(report, dict) or report.get("message") != ctx.message_id or report.get("account") != ctx.account:
        raise AuthenticationFailed("report belongs to another message or account (replayed)")
    ctx.learn(PROVIDER, "report", report)
    ctx.verdict(PROVIDER, True)
    return report
