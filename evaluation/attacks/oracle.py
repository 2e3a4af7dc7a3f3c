"""Membership-oracle probing: can a device test images against the list, and how fast?

A device that learns its own verdict without contacting anyone (an on-device list, a
Bloom filter) is an **offline oracle**: an attacker runs candidate images through the
real scheme code as often as he likes, tunes an evasion until the verdict flips, or
confirms which images of a collection are on the list. A device that learns its verdict
through a round trip to the provider (``psi-client-learns``) is an **online** oracle, rate
limited by the provider. A device that learns nothing (PSI-AD family, hash upload, HE
with a third-party key) is **no** oracle.

The class is measured, not taken from metadata: the probe runs the scheme's real roles
on one known and one unrelated image and looks at (a) whether the device recorded a
verdict, (b) whether anything crossed the channel during ``device_prepare`` and (c)
whether the payload the device itself holds differs in size between match and non-match
(a device sees its own payload even when the scheme declares nothing).
Throughput is the CPU time of ``device_prepare`` (hash + membership test) over a
candidate pool: the list's images (JPEG-recompressed, as an attacker's copies would be)
mixed into unrelated images; the confirmed share of the list is what the oracle reveals.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from e2eebench.clientside.hashing import Hasher
from e2eebench.protocols.channel import DEVICE, PROVIDER, Channel, MessageContext, PartyClock
from e2eebench.protocols.framework import Scheme
from e2eebench.protocols.registry import scheme_class
from e2eebench.server.database import KnownHashDatabase

Progress = Callable[[str, int, int], None]
ORACLE_CLASSES = ("offline", "online", "none")


def make_ctx(channel: Channel, clock: PartyClock, message_id: str, account: str, seed: int) -> MessageContext:
    """A message context wired like the runner's: the provider's interactive endpoint, if set up."""
    rng = np.random.default_rng([seed, zlib.crc32(message_id.encode())])
    return MessageContext(message_id, account, channel, clock, rng)


def tiny_setup(name: str, hasher: Hasher, db: KnownHashDatabase, seed: int = 0,
               params: dict[str, Any] | None = None) -> tuple[Scheme, Any, Any, Channel, PartyClock]:
    """Set a scheme up on ``db`` and load its bundle on one device, through the channel."""
    scheme = scheme_class(name)(hasher, None, **(params or {}))
    channel, clock = Channel(), PartyClock()
    sctx = make_ctx(channel, clock, "setup", PROVIDER, seed)
    with channel.exchange("setup"), clock.role(PROVIDER):
        pstate, bundle = scheme.provider_setup(db, sctx)
    dctx = make_ctx(channel, clock, "bundle:alice", "alice", seed)
    with channel.exchange(dctx.message_id):
        received = channel.send(PROVIDER, DEVICE, "bundle", bundle)
        with clock.role(DEVICE):
            dstate = scheme.device_load(received, "alice", dctx)
    scheme.connect(channel, pstate, lambda account: dstate)
    return scheme, pstate, dstate, channel, clock


@dataclass
class OracleProbe:
    scheme: str
    oracle: str                 # offline / online / none
    device_verdict: bool        # the device recorded a verdict (during prepare or after the round)
    sends_during_prepare: int   # transfers while the device decided
    payload_reveals: bool       # the device's own observables differ between match and non-match
    reason: str


def _device_verdicts(channel: Channel, mid: str) -> list[bool]:
    return [bool(x.value) for x in channel.ledger.learned
            if x.message_id == mid and x.party == DEVICE and x.kind == "verdict"]


def probe_oracle(name: str, hasher: Hasher, known: list, other: list, seed: int = 0,
                 params: dict[str, Any] | None = None) -> OracleProbe:
    """Classify a scheme's oracle by running its roles on known and unrelated images."""
    cls_ = scheme_class(name)
    if cls_.matching == "none":   # a control row: there is no verdict to learn
        return OracleProbe(name, "none", False, 0, False, "the scheme does no detection: no verdict to learn")
    if cls_.device_seal is not Scheme.device_seal:   # the payload is made from the sealed body
        return OracleProbe(name, "none", False, 0, False,
                           "not probed on the device alone: the payload is made at sealing (a user's "
                           "report or an escrow copy) and the device records no verdict")
    db = KnownHashDatabase.from_images(known, [hasher])
    scheme, pstate, dstate, channel, clock = tiny_setup(name, hasher, db, seed, params)
    obs: dict[bool, set] = {True: set(), False: set()}
    offline_verdict = online_verdict = False
    sends = 0
    for i, (is_known, img) in enumerate([(True, k.image) for k in known[:2]] + [(False, o.image) for o in other[:2]]):
        mid = f"probe-{i}"
        ctx = make_ctx(channel, clock, mid, "alice", seed)
        before = len(channel.transfers)
        with channel.exchange(mid):
            with clock.role(DEVICE):
                prep = scheme.device_prepare(dstate, img, ctx)
            sends += len(channel.transfers) - before
            offline_verdict |= bool(_device_verdicts(channel, mid))
            obs[is_known].add((tuple(_device_verdicts(channel, mid)), len(prep.payload) > 0, prep.send,
                               prep.notice is not None))
            if prep.send:
                with clock.role(PROVIDER):
                    scheme.provider_receive(pstate, channel.send(DEVICE, PROVIDER, "payload", prep.payload), ctx)
        online_verdict |= bool(_device_verdicts(channel, mid))
    reveals = not (obs[True] & obs[False])
    if (offline_verdict or reveals) and sends == 0:
        cls, why = "offline", "the device decides alone from its bundle: test candidates offline, unlimited"
    elif offline_verdict or reveals or online_verdict:
        cls, why = "online", "the device learns its verdict through a round trip to the provider (rate-limitable)"
    else:
        cls, why = "none", "the device learns nothing about the verdict"
    return OracleProbe(name, cls, offline_verdict or online_verdict, sends, reveals, why)


def candidate_pool(hasher: Hasher, n_known: int, n_candidates: int, seed: int = 0, size: int = 128):
    """The list (n_known dead-leaves images) and a pool: its JPEG copies mixed into unrelated images."""
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.evaluation.data.transforms import parse_transform
    items = get_corpus("dead-leaves", seed=seed, size=size).items(n_known + max(0, n_candidates - n_known))
    known = items[:n_known]
    jpeg = parse_transform("jpeg:q=75")
    pool = [("exact", it.image) for it in known] + [("jpeg", jpeg.apply(it.image, seed=i)) for i, it in enumerate(known)]
    pool += [("unrelated", it.image) for it in items[n_known:]]
    order = np.random.default_rng(seed).permutation(len(pool))
    return known, items[n_known:], [pool[i] for i in order]


@dataclass
class OracleRun:
    scheme: str
    oracle: str
    candidates: int
    list_size: int
    queries_per_s: float | None
    confirmed_exact: int        # list entries whose exact copy the oracle flagged
    confirmed_jpeg: int         # list entries whose JPEG (q=75) copy the oracle flagged
    false_hits: int             # unrelated candidates flagged
    reason: str

    def record(self) -> dict:
        return asdict(self)


def run_oracle(name: str, hasher: Hasher, n_candidates: int = 2000, n_known: int = 40, seed: int = 0,
               params: dict[str, Any] | None = None, progress: Progress | None = None,
               pool_data: tuple | None = None) -> OracleRun:
    """Probe the oracle class; for an offline oracle, run the whole pool through the device role.

    ``pool_data`` (from :func:`candidate_pool`) lets several schemes share one pool."""
    known, unrelated, pool = pool_data or candidate_pool(hasher, n_known, n_candidates, seed)
    n_known = len(known)
    probe = probe_oracle(name, hasher, known, unrelated, seed, params)
    if probe.oracle != "offline":
        return OracleRun(name, probe.oracle, 0, n_known, None, 0, 0, 0, probe.reason)
    db = KnownHashDatabase.from_images(known, [hasher])
    scheme, _, dstate, channel, clock = tiny_setup(name, hasher, db, seed, params)
    base = _answer(scheme, dstate, channel, clock, unrelated[0].image, "baseline", seed)
    hits = {"exact": 0, "jpeg": 0, "unrelated": 0}
    t0 = time.process_time()
    for i, (kind, img) in enumerate(pool):
        hits[kind] += _answer(scheme, dstate, channel, clock, img, f"q{i}", seed) != base
        if progress:
            progress(f"oracle {name}", i + 1, len(pool))
    spent = time.process_time() - t0
    return OracleRun(name, "offline", len(pool), n_known, len(pool) / spent if spent > 0 else None,
                     hits["exact"], hits["jpeg"], hits["unrelated"], probe.reason)


def _answer(scheme: Scheme, dstate: Any, channel: Channel, clock: PartyClock, img, mid: str, seed: int):
    """What the device itself observes for one candidate: its verdict, or its payload's shape."""
    ctx = make_ctx(channel, clock, mid, "alice", seed)
    with channel.exchange(mid), clock.role(DEVICE):
        prep = scheme.device_prepare(dstate, img, ctx)
    v = [x.value for x in channel.ledger.learned if x.message_id == mid and x.party == DEVICE
         and x.kind == "verdict"]
    channel.ledger.learned = [x for x in channel.ledger.learned if x.message_id != mid]  # keep memory flat
    channel.ledger.received.clear()
    channel.transfers.clear()
    return (bool(v and v[-1]), len(prep.payload) > 0, prep.send, prep.notice is not None)
