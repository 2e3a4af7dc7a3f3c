"""The wire between parties, the ledger of what each party saw, and per-party CPU clocks.

Every value that crosses from one party to another goes through :meth:`Channel.send`
as ``bytes``; the channel records sender, receiver, label and size, so bytes up/down
and rounds are counted from what actually crossed, never estimated.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

DEVICE = "device"          # the sending device
RECIPIENT = "recipient"    # the receiving device
PROVIDER = "provider"      # the messaging provider (relay, matching, report queue)
THIRD_PARTY = "third-party"  # e.g. a hotline / EU Centre holding a key
SECOND_SERVER = "second-server"  # a non-colluding second server (MPC)
ENCLAVE = "provider-enclave"  # a trusted execution environment run by the provider
DEALER = "dealer"          # hands out correlated randomness (Beaver triples) offline (MPC)
ESCROW = "escrow"          # an authority that can read escrowed content (exceptional access)
PARTIES = (DEVICE, RECIPIENT, PROVIDER, THIRD_PARTY, SECOND_SERVER, ENCLAVE, DEALER, ESCROW)
# every party that is not a user's device: their CPU sums to a scheme's server-side cost
SERVER_PARTIES = tuple(p for p in PARTIES if p not in (DEVICE, RECIPIENT))


@dataclass(frozen=True)
class Transfer:
    """One flight of bytes: who sent what to whom, how big, in which exchange."""

    seq: int
    sender: str
    receiver: str
    label: str
    size: int
    message_id: str | None
    flight: int


@dataclass(frozen=True)
class Learned:
    """One value a party could decrypt or compute (a hash, a verdict, a report, ...)."""

    party: str
    kind: str
    value: Any
    message_id: str | None = None


class _Spill:
    """An anonymous temporary file that holds received bytes, so a long run's views live on disk
    (read back in one pass by the probes), not in memory. Deleted when closed or collected."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._fd = self._file.fileno()
        self._end = 0

    def put(self, data: bytes) -> tuple[int, int]:
        at, n = self._end, len(data)
        view = memoryview(data)
        while view:
            view = view[os.pwrite(self._fd, view, self._end):]
            self._end = at + n - len(view)
        return at, n

    def get(self, at: int, n: int) -> bytes:
        return os.pread(self._fd, n, at) if n else b""


class SpilledList:
    """A list of tuples whose element ``slot`` (bytes) lives in a :class:`_Spill`: appends write
    the bytes out, reads return the tuple with its bytes read back, in order."""

    def __init__(self, spill: _Spill, slot: int) -> None:
        self._spill, self._slot, self._rows = spill, slot, []

    def append(self, row: tuple) -> None:
        at_n = self._spill.put(row[self._slot])
        self._rows.append(row[:self._slot] + (at_n,) + row[self._slot + 1:])

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return bool(self._rows)

    def _load(self, row: tuple) -> tuple:
        return row[:self._slot] + (self._spill.get(*row[self._slot]),) + row[self._slot + 1:]

    def __getitem__(self, i: int) -> tuple:
        return self._load(self._rows[i])

    def __iter__(self) -> Iterator[tuple]:
        for row in self._rows:
            yield self._load(row)

    def meta(self) -> Iterator[tuple]:
        """The rows without reading their bytes (the bytes' slot holds (offset, size))."""
        return iter(self._rows)


class Ledger:
    """What each party received (the bytes) and what it learned.

    Leakage metrics read this: a canary scan looks for plaintext and benign hashes in
    the provider's received bytes, and the declared ``learned`` entries say what a
    party was able to compute.
    """

    def __init__(self, keep_bytes: bool = True, spill: bool = False):
        """``spill``: keep the received and opened bytes in a temporary file (a run's ledger), so
        memory holds only the transfer records however long the traffic."""
        self.keep_bytes = keep_bytes
        self._spill = _Spill() if spill and keep_bytes else None
        sp = self._spill
        self.received: dict[str, list[tuple[Transfer, bytes]]] = \
            defaultdict(list) if sp is None else defaultdict(lambda: SpilledList(sp, 1))  # type: ignore[arg-type]
        self.learned: list[Learned] = []
        # plaintexts a party obtained by decrypting bytes it received with its own keys, recorded
        # as bytes where the decryption happens: part of its raw view (probes read it), unlike
        # ``learned``, which is the scheme's own account of what the values mean (declared)
        self.opened: dict[str, list[tuple[str | None, str, bytes]]] = \
            defaultdict(list) if sp is None else defaultdict(lambda: SpilledList(sp, 2))  # type: ignore[arg-type]

    def record_receipt(self, transfer: Transfer, data: bytes) -> None:
        self.received[transfer.receiver].append((transfer, data if self.keep_bytes else b""))

    def learn(self, party: str, kind: str, value: Any, message_id: str | None = None) -> None:
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r}")
        self.learned.append(Learned(party, kind, value, message_id))

    def record_opened(self, party: str, label: str, data: bytes, message_id: str | None) -> None:
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r}")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("an opened value is recorded as bytes")
        self.opened[party].append((message_id, label, bytes(data) if self.keep_bytes else b""))

    def learned_by(self, party: str, kind: str | None = None) -> list[Learned]:
        return [x for x in self.learned if x.party == party and (kind is None or x.kind == kind)]

    def received_bytes(self, party: str) -> Iterator[bytes]:
        for _, data in self.received.get(party, []):
            yield data


class Channel:
    """Carries bytes only, and keeps the record of every transfer."""

    def __init__(self, ledger: Ledger | None = None):
        self.ledger = ledger if ledger is not None else Ledger()
        self.transfers: list[Transfer] = []
        self._by_message: dict[str | None, list[Transfer]] = defaultdict(list)
        # interactive endpoints on this network: party -> handler(label, request, ctx) -> response
        self.endpoints: dict[str, Callable[[str, bytes, "MessageContext"], bytes]] = {}
        self._scope: str | None = None
        self._flight = 0
        self._last_direction: tuple[str, str] | None = None

    @contextmanager
    def exchange(self, message_id: str | None) -> Iterator[None]:
        """Group the transfers of one message (or one setup) to count its flights."""
        prev = (self._scope, self._flight, self._last_direction)
        self._scope, self._flight, self._last_direction = message_id, 0, None
        try:
            yield
        finally:
            self._scope, self._flight, self._last_direction = prev

    def send(self, sender: str, receiver: str, label: str, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"channel carries bytes only, got {type(data).__name__} for {label!r}")
        if sender == receiver:
            raise ValueError("a party does not send to itself")
        data = bytes(data)
        direction = (sender, receiver)
        if direction != self._last_direction:
            self._flight += 1
            self._last_direction = direction
        t = Transfer(len(self.transfers), sender, receiver, label, len(data), self._scope, self._flight)
        self.transfers.append(t)
        self._by_message[self._scope].append(t)
        self.ledger.record_receipt(t, data)
        return data

    def for_message(self, message_id: str) -> list[Transfer]:
        return list(self._by_message.get(message_id, ()))

    def observer_view(self) -> dict[tuple[str, str], list[Transfer]]:
        """What a network observer on each link sees: per link (the two parties, sorted), every
        transfer on it in order, with its direction (sender, receiver) and size. The observer
        sees no labels; probes read only ``seq``, ``sender``, ``receiver``, ``size`` and the
        exchange it belongs to (a proxy for grouping flights by time)."""
        out: dict[tuple[str, str], list[Transfer]] = defaultdict(list)
        for t in self.transfers:
            out[tuple(sorted((t.sender, t.receiver)))].append(t)
        return dict(out)


class PartyClock:
    """CPU time per party: entering one party's role pauses the enclosing party's clock."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []

    @contextmanager
    def role(self, party: str) -> Iterator[None]:
        now = time.process_time()
        if self._stack:
            outer, started = self._stack[-1]
            self.totals[outer] += now - started
        self._stack.append((party, now))
        try:
            yield
        finally:
            end = time.process_time()
            p, started = self._stack.pop()
            self.totals[p] += end - started
            if self._stack:
                outer, _ = self._stack[-1]
                self._stack[-1] = (outer, end)

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)


@dataclass
class MessageContext:
    """What a scheme's roles get for one message: the wire, the ledger, the clocks, a seeded rng."""

    message_id: str
    account: str
    channel: Channel
    clock: PartyClock
    rng: Any  # numpy.random.Generator
    extra: dict[str, Any] = field(default_factory=dict)
    # interactive endpoints: party -> handler(label, request bytes, ctx) -> response bytes
    endpoints: dict[str, Callable[[str, bytes, "MessageContext"], bytes]] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        return self.channel.ledger

    def send(self, sender: str, receiver: str, label: str, data: bytes) -> bytes:
        return self.channel.send(sender, receiver, label, data)

    def call(self, sender: str, receiver: str, label: str, request: bytes) -> bytes:
        """One request/response round: bytes out, the receiver's handler on its clock, bytes back."""
        from e2eebench.protocols.errors import ProtocolError
        handler = self.endpoints.get(receiver) or self.channel.endpoints.get(receiver)
        if handler is None:
            raise ProtocolError(f"{receiver} offers no interactive endpoint")
        delivered = self.send(sender, receiver, label, request)
        with self.role(receiver):
            response = handler(label, delivered, self)
        return self.send(receiver, sender, label + ":response", response)

    def learn(self, party: str, kind: str, value: Any, message_id: str | None = None) -> None:
        self.ledger.learn(party, kind, value, message_id or self.message_id)

    def opened(self, party: str, label: str, data: bytes) -> None:
        """Record the plaintext bytes ``party`` just decrypted with its own keys (its raw view)."""
        self.ledger.record_opened(party, label, data, self.message_id)

    def verdict(self, party: str, match: bool, message_id: str | None = None) -> None:
        """Record that ``party`` learned whether this message matched the list."""
        self.learn(party, "verdict", bool(match), message_id)

    def role(self, party: str):
        return self.clock.role(party)

    def binding(self) -> bytes:
        """Associated data that binds a sealed value to this account and message (a replayed or
        moved payload then fails to authenticate)."""
        return self.account.encode() + b"\x00" + self.message_id.encode()

    def random_bytes(self, n: int) -> bytes:
        return self.rng.bytes(n)
