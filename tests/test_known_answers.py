"""Known-answer tests for the project's own formats: a sealed report (HPKE), the on-device-list
and hash-upload bundles and a sealed hash. Fixed inputs, a fixed random source, fixed bytes in
tests/vectors/formats_kat.json; a change to any of these formats changes the bytes and fails here.
(The envelope and prekey bundle have theirs in test_messaging.py.)"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher
from e2eebench.protocols.channel import PROVIDER, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.crypto import KeyPair, open_sealed
from e2eebench.protocols.errors import AuthenticationFailed
from e2eebench.protocols.registry import scheme_class
from e2eebench.protocols.sealed_report import open_report, seal_report
from e2eebench.server.database import KnownHashDatabase

KAT = Path(__file__).parent / "vectors" / "formats_kat.json"


class CounterRng:
    """Stands in for the context's generator: bytes from SHA-256(label || counter), nothing else."""

    def __init__(self, label: bytes):
        self.label, self.i = label, 0

    def bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.label + self.i.to_bytes(8, "big")).digest()
            self.i += 1
        return out[:n]


def _ctx(label: bytes, mid="m-kat", account="acct-kat"):
    return MessageContext(mid, account, Channel(Ledger()), PartyClock(), CounterRng(label))


def _db():
    hs = np.frombuffer(b"".join(hashlib.sha256(bytes([i])).digest() for i in range(3)), dtype=np.uint8).reshape(3, 32)
    return KnownHashDatabase(["k0", "k1", "k2"], {"pdq": hs.copy()}, {}, 1)


def outputs() -> dict[str, str]:
    pdq = get_hasher("pdq")
    keys = KeyPair.generate(CounterRng(b"kat-report-key").bytes)
    report = seal_report(keys.public_bytes, {"entry": 1, "distance": 7}, _ctx(b"kat-report"), b"e2eebench on-device report v1")
    odl = scheme_class("on-device-list")(pdq)
    _, odl_bundle = odl.provider_setup(_db(), _ctx(b"kat-odl", "setup", PROVIDER))
    hu = scheme_class("hash-upload")(pdq)
    hu_state, hu_bundle = hu.provider_setup(_db(), _ctx(b"kat-hu", "setup", PROVIDER))
    dstate = hu.device_load(hu_bundle, "acct-kat", _ctx(b"kat-hu-load"))
    from PIL import Image
    img = Image.fromarray((np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3))
    sealed_hash = hu.device_prepare(dstate, img, _ctx(b"kat-hu-send")).payload
    return {"report_key": keys.public_bytes.hex(), "sealed_report": report.hex(),
            "on_device_list_bundle": odl_bundle.hex(), "hash_upload_bundle": hu_bundle.hex(),
            "hash_upload_sealed_hash": sealed_hash.hex()}


def test_formats_known_answers():
    assert outputs() == json.loads(KAT.read_text())["outputs"]


def test_sealed_report_opens_and_names_its_message():
    keys = KeyPair.generate(CounterRng(b"kat-report-key").bytes)
    blob = bytes.fromhex(json.loads(KAT.read_text())["outputs"]["sealed_report"])
    assert len(blob) == 32 + len(json.dumps({"account": "acct-kat", "distance": 7, "entry": 1, "message": "m-kat"},
                                            sort_keys=True)) + 16
    rep = open_report(keys, blob, _ctx(b"x"), b"e2eebench on-device report v1")
    assert rep == {"entry": 1, "distance": 7, "message": "m-kat", "account": "acct-kat"}
    assert open_sealed(keys, blob, info=b"e2eebench on-device report v1", ad=b"acct-kat\x00m-kat")
    with pytest.raises(AuthenticationFailed):  # the associated data binds the message, not only the account
        open_sealed(keys, blob, info=b"e2eebench on-device report v1", ad=b"acct-kat")
    with pytest.raises(AuthenticationFailed):
        open_report(keys, blob, _ctx(b"x", mid="m-other"), b"e2eebench on-device report v1")
