"""The scheme plugin interface: class-level metadata, a self-validating registry.

A scheme is a stateless class (its parameters fixed at construction) whose methods are
the roles of its protocol. Parties hold their own state objects, built only from bytes
that reached them through the :class:`~e2eebench.protocols.channel.Channel`:

setup     ``provider_setup(db, ctx) -> (provider_state, bundle_bytes)``; the host sends
          the bundle to every device, which runs ``device_load(bundle, account, ctx)``.
message   ``device_prepare(device_state, image, ctx) -> Prepared`` (the detection
          payload that rides in the E2EE envelope, or a refusal to send), then on the
          provider ``provider_receive(provider_state, payload, ctx, body)``; ``body`` is
          the decrypted message only for schemes without end-to-end encryption. A device
          that needs an answer first (client-learns PSI) calls ``ctx.call(DEVICE, PROVIDER,
          label, request)``, which reaches ``provider_answer(provider_state, label, request,
          ctx)`` on the provider's clock; both directions are counted on the channel. The
          provider reaches the sending device the same way (``ctx.call(PROVIDER, DEVICE,
          ...)`` -> ``device_answer(device_state, ...)``), e.g. for a result only it can decrypt.
period    ``provider_finalize(provider_state, ctx)`` at the end of the run (threshold
          schemes release verdicts there).

Every role records what its party learned through ``ctx.learn`` / ``ctx.verdict``;
leakage metrics read those records and also test them against the raw bytes.
"""
from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import Hasher, hamming
from e2eebench.clientside.hashing import decode_image as decode_image_bytes
from e2eebench.protocols.channel import DEVICE, PARTIES, PROVIDER, MessageContext
from e2eebench.protocols.errors import ConfigError, InputError, MalformedMessage
from e2eebench.server.database import KnownHashDatabase

FAMILIES = ("baseline", "on-device", "hash-upload", "psi", "he", "mpc", "modelled")
EU_CATEGORIES = {
    "baseline": "baseline (no E2EE)",
    "device": "device-related",
    "server": "server-related",
    "encryption": "encryption-related",
}
MATCHING = ("fuzzy", "exact", "approximate", "chunked", "none")  # none: a control row, no detection
# What an ideal functionality may reveal to a party (a scheme's leakage function, declared per
# party as class metadata ``leakage``); the leakage probes measure the same quantities:
#   verdict  the match bit of an image message      link   whether two sends are the same image
#   hash     the image's hash (or an intermediate)  image  the image itself
#   chunks   which hash chunks equal a list value   count  matches of an account below threshold
#   list     the known list (or a membership oracle for it)
LEAKS = ("verdict", "link", "hash", "image", "chunks", "count", "list")
# a party that holds the image can compute its hash; one that holds a hash links repeats and
# (holding the list) computes the verdict; matched chunk positions link repeats
LEAK_IMPLIES = {"image": ("hash", "link", "verdict", "chunks"), "hash": ("link", "verdict", "chunks"),
                "chunks": ("link",)}


def declared_leaks(leakage: dict[str, tuple[str, ...]], party: str) -> frozenset[str]:
    """The quantities a leakage declaration lets ``party`` learn, with what they imply."""
    out = set(leakage.get(party, ()))
    for q in list(out):
        out.update(LEAK_IMPLIES.get(q, ()))
    return frozenset(out)
ACTIONS = ("report", "block", "warn")


def decode_image(data: bytes) -> Image.Image:
    """A message body's image as the provider decodes it (baseline, or a reported message);
    hostile bytes (a decompression bomb, a garbled TIFF) are MalformedMessage."""
    try:
        return decode_image_bytes(data, "image in message body")
    except InputError as e:
        raise MalformedMessage(str(e)) from None


@dataclass(frozen=True)
class Param:
    """A scheme parameter: name, default, type and the values it may take."""

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    type: type | None = None

    def coerce(self, value: Any) -> Any:
        t = self.type or type(self.default)
        try:
            if t is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            else:
                value = t(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {self.name!r} must be {t.__name__}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"parameter {self.name!r} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


@dataclass
class Prepared:
    """What the device decided for one image: the payload to attach, or not to send at all."""

    payload: bytes = b""
    send: bool = True
    notice: str | None = None  # what the user was told (action "warn" / "block")


class Scheme(ABC):
    name: ClassVar[str]
    family: ClassVar[str]
    eu_category: ClassVar[str]
    parties: ClassVar[tuple[str, ...]]
    verdict_to: ClassVar[str]
    trust: ClassVar[str]
    matching: ClassVar[str]
    description: ClassVar[str]
    e2ee: ClassVar[bool] = True
    modelled: ClassVar[bool] = False
    params: ClassVar[tuple[Param, ...]] = ()
    # the leakage function: party -> what the ideal functionality reveals to it (LEAKS); a
    # party not named learns nothing; "observer" stands for a network observer on any link. Stored as `declared`; the probes' figures are `measured`
    leakage: ClassVar[dict[str, tuple[str, ...]]]
    leakage_text: ClassVar[dict[str, str]] = {}
    # expensive schemes (HE) run the quick profile on a seeded, stratified sample of this many
    # image messages; the measurements then say so (params: messages_sampled / messages_total)
    quick_sample: ClassVar[int | None] = None
    # (entries, messages): schemes whose per-message work and bytes grow linearly with the list
    # (MPC) run lists longer than ``entries`` on a seeded sample of ``messages`` image messages,
    # in any profile; the measurements say so in the same way
    list_sample: ClassVar[tuple[int, int] | None] = None

    def __init__(self, hasher: Hasher, threshold: int | None = None, **params: Any):
        self.hasher = hasher
        self.threshold = hasher.default_threshold if threshold is None else int(threshold)
        if not 0 <= self.threshold <= hasher.bits:
            raise ConfigError(f"threshold {self.threshold} outside 0..{hasher.bits} for {hasher.name}")
        known = {p.name: p for p in self.params}
        for k in params:
            if k not in known:
                raise ConfigError(f"scheme {self.name!r} has no parameter {k!r}"
                                  + (f" (has: {', '.join(known)})" if known else ""))
        self.p: dict[str, Any] = {n: (p.coerce(params[n]) if n in params else p.default)
                                  for n, p in known.items()}

    # -- metadata helpers ----------------------------------------------------------------
    @property
    def detector(self) -> str:
        """The party whose positive verdict counts as a detection."""
        return PROVIDER

    def describe_params(self) -> dict[str, Any]:
        return {"hasher": self.hasher.name, "threshold": self.threshold, **self.p}

    def plaintext_match(self, db: KnownHashDatabase, h: np.ndarray) -> bool:
        """The reference verdict a scheme claiming ``fuzzy`` or ``exact`` matching must equal."""
        hs = db.hashes_for(self.hasher.name)
        if len(hs) == 0 or self.matching == "none":
            return False
        d = hamming(hs, h)
        return bool((d == 0).any()) if self.matching == "exact" else bool((d <= self.threshold).any())

    def plaintext_verdict(self, db: KnownHashDatabase, image: Image.Image) -> bool:
        """The reference verdict for an image (schemes matching on more than the hash override it)."""
        return self.plaintext_match(db, self.hasher.hash(image))

    def account_verdicts(self, db: KnownHashDatabase,
                         sent: list[tuple[str, str, Image.Image, bool]]) -> dict[str, bool] | None:
        """Reference verdicts for a scheme whose verdict depends on the account's history (a
        threshold): ``sent`` is every image message in order as (message id, account, image,
        whether the device sent it as a real voucher). ``None`` (the default): per image, by
        :meth:`plaintext_verdict`."""
        return None

    # -- roles ---------------------------------------------------------------------------
    @abstractmethod
    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        """Build the provider's state and the device bundle (bytes every device downloads)."""

    @abstractmethod
    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        """Parse the bundle on a device; malformed bundles raise MalformedMessage."""

    @abstractmethod
    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        """Device role for one image message."""

    @abstractmethod
    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext,
                         body: Any | None = None) -> None:
        """Provider role for one message's detection payload."""

    def device_seal(self, state: Any, body: bytes, prepared: Prepared | None,
                    ctx: MessageContext) -> tuple[bytes, bytes]:
        """Last device step for every message, once its body is encoded: (the detection payload
        for the envelope, bytes sealed inside the end-to-end ciphertext for the recipient only).
        Default: the prepared payload, nothing sealed. Franking commits to the body here."""
        return (prepared.payload if prepared is not None else b""), b""

    def provider_stamp(self, state: Any, envelope: Any, ctx: MessageContext) -> bytes:
        """Bytes the provider attaches at relay time, delivered to the recipient beside the
        envelope (a franking tag). ``envelope`` is the parsed envelope. Default: nothing."""
        return b""

    def recipient_receive(self, state: Any, delivered: Any, ctx: MessageContext) -> None:
        """The recipient device's role once an envelope opens (``delivered`` is a
        messaging.Delivered: sender, body, payload, sealed bytes, stamp). Default: nothing."""

    def reference_verdict(self, db: KnownHashDatabase, image: Image.Image, ledger: Any, message_id: str) -> bool:
        """The verdict the conformance suite expects for one sent image: the plaintext rule,
        and for schemes whose detection waits on a person (a recipient's report) also that
        person's recorded decision."""
        return self.plaintext_verdict(db, image)

    def device_storage(self, state: Any) -> int:
        """Bytes a device keeps beyond the downloaded bundle (e.g. its own secret key)."""
        return 0

    def provider_answer(self, state: Any, label: str, request: bytes, ctx: MessageContext) -> bytes:
        """The provider's interactive endpoint, reached from a device with ``ctx.call``."""
        from e2eebench.protocols.errors import MalformedMessage
        raise MalformedMessage(f"{self.name} offers no interactive provider endpoint")

    def connect(self, channel: Any, provider_state: Any, device_state: Any) -> None:
        """Put this scheme's interactive endpoints on the channel: the provider's, and the
        sending device's (``device_state(account)`` gives that device's state)."""
        channel.endpoints[PROVIDER] = lambda label, req, c: self.provider_answer(provider_state, label, req, c)
        channel.endpoints[DEVICE] = lambda label, req, c: self.device_answer(device_state(c.account), label, req, c)

    def device_answer(self, state: Any, label: str, request: bytes, ctx: MessageContext) -> bytes:
        """The sending device's interactive endpoint (``ctx.call(PROVIDER, DEVICE, ...)``)."""
        from e2eebench.protocols.errors import MalformedMessage
        raise MalformedMessage(f"{self.name} offers no interactive device endpoint")

    def provider_finalize(self, state: Any, ctx: MessageContext) -> None:
        """End-of-period step (e.g. threshold reconstruction); default: nothing."""


SCHEMES: dict[str, type[Scheme]] = {}
_REQUIRED = ("name", "family", "eu_category", "parties", "verdict_to", "trust", "matching",
             "description", "leakage")


def register(cls: type[Scheme]) -> type[Scheme]:
    """Class decorator: validate a scheme's metadata and add it to the registry."""
    for attr in _REQUIRED:
        if not hasattr(cls, attr):
            raise TypeError(f"scheme {cls.__name__} lacks class attribute {attr!r}")
    if cls.family not in FAMILIES:
        raise TypeError(f"scheme {cls.name}: family {cls.family!r} not in {FAMILIES}")
    if cls.eu_category not in EU_CATEGORIES:
        raise TypeError(f"scheme {cls.name}: eu_category {cls.eu_category!r} not in {tuple(EU_CATEGORIES)}")
    if cls.matching not in MATCHING:
        raise TypeError(f"scheme {cls.name}: matching {cls.matching!r} not in {MATCHING}")
    if not set(cls.parties) <= set(PARTIES) or DEVICE not in cls.parties:
        raise TypeError(f"scheme {cls.name}: parties {cls.parties} must include the device and be among {PARTIES}")
    for party, qs in cls.leakage.items():
        if party not in PARTIES + ("observer",) or not set(qs) <= set(LEAKS):
            raise TypeError(f"scheme {cls.name}: leakage {party!r}: {qs} must name a party and quantities in {LEAKS}")
    names = [p.name for p in cls.params]
    if len(set(names)) != len(names):
        raise TypeError(f"scheme {cls.name}: duplicate parameter names")
    if cls.name in SCHEMES and SCHEMES[cls.name] is not cls:
        raise TypeError(f"scheme name {cls.name!r} registered twice")
    SCHEMES[cls.name] = cls
    return cls


ACTION_PARAM = Param("action", "report", "what the device does on a match: report, block or warn",
                     ACTIONS, str)
