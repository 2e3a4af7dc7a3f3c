"""The deviating-server attack on ``two-server-mpc``: near misses a malicious provider reads.

The scheme is secure against semi-honest servers only. Its threshold test opens
``r * prod_i (d_j - i)`` per list entry j, and the points i are the provider's own local input
(it subtracts them from its share of d_j). A provider that replaces 0..tau by any tau + 1 points
of its choice, per entry, learns for each entry whether the distance lies in that set; the
second server sees the same number of factors, triples and openings, so it cannot notice.

The attack here is that provider, run against the real protocol code (the scheme's own
``provider_receive``, device and second server unchanged; only ``test_points`` differs). It
chooses the band ``(tau, tau + width]`` (default width tau + 1: the near misses just above the
threshold) and reads, from the opened result in its raw view and the permutation seed it
shares, which entries' distances fall in the band. Per distinct benign image of the run:

- ``mpc_deviation_near_miss_rate``: share of benign images for which the deviating provider
  learns that some list entry lies in the band (the honest protocol reveals none: a benign image
  is not within tau), Wilson interval;
- ``mpc_deviation_accuracy``: share of benign images whose per-entry band answers all equal the
  truth from plaintext distances (the attack is exact, or it is not the attack claimed);
- ``mpc_deviation_bits``: bits per benign image the band answers carry, the plug-in entropy of
  the per-entry indicators summed over entries (an upper bound of their joint entropy, at most
  one bit per entry; no interval);
- ``mpc_deviation_detected``: share of images for which the second server's view (the sizes,
  labels and order of what it receives) differs from the honest protocol's.
All measured. Over repeated sends of one image the provider can move the band, so with
ceil((bits + 1) / (tau + 1)) sends it reads every distance exactly; that walk is not run here.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from e2eebench.protocols.channel import DEVICE, PROVIDER, SECOND_SERVER, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.mpc import P, TwoServerMPC
from e2eebench.evaluation.leakage.counting import CachedHasher
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import wilson
from e2eebench.evaluation.run.store import Measurement

MAX_IMAGES = 60        # distinct benign images attacked (each runs the protocol twice)
MAX_ENTRIES = 10_000   # beyond this list size, two images (each runs the protocol twice)


class DeviatingProvider(TwoServerMPC):
    """two-server-mpc whose provider tests the band (tau, tau + width] instead of [0, tau]."""

    width: int | None = None

    def test_points(self, n_entries: int) -> np.ndarray:
        tau = self.threshold
        width = self.width or tau + 1
        pts = np.arange(tau + 1, tau + 1 + width, dtype=np.uint64)[: tau + 1]
        if len(pts) < tau + 1:  # a narrower band: repeat its last point (the factor count is fixed)
            pts = np.concatenate([pts, np.full(tau + 1 - len(pts), pts[-1], np.uint64)])
        return np.broadcast_to(pts, (n_entries, tau + 1))


def _h2(q: float) -> float:
    return 0.0 if q <= 0 or q >= 1 else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def _second_view(ledger: Ledger, mid: str) -> list[tuple[str, int]]:
    return [(t.label, t.size) for t, _ in ledger.received.get(SECOND_SERVER, []) if t.message_id == mid]


def attack(scheme: TwoServerMPC, hasher, db, images: list, seed: int,
           width: int | None = None) -> dict[str, list]:
    """Run the honest and the deviating provider on each image; per image: the entries the
    deviating provider reads in the band, the true ones, and whether the second server's view
    differed."""
    hs = hasher.hash_many([im for _, im in images])
    cached = CachedHasher(hasher, {id(im): h for (_, im), h in zip(images, hs)})
    honest = TwoServerMPC(cached, scheme.threshold, **scheme.p)
    bad = DeviatingProvider(cached, scheme.threshold, **scheme.p)
    bad.width = width
    tau, w = scheme.threshold, min(width or scheme.threshold + 1, scheme.threshold + 1)
    listed = np.unpackbits(db.hashes_for(hasher.name), axis=1)
    out: dict[str, list] = {"read": [], "truth": [], "detected": []}
    views = {}
    for role, sch in (("honest", honest), ("deviating", bad)):
        ledger = Ledger()
        ch, clock = Channel(ledger), PartyClock()

        def ctx(mid: str, acct: str) -> MessageContext:
            return MessageContext(mid, acct, ch, clock, np.random.default_rng([seed, zlib.crc32(mid.encode())]))
        with ch.exchange("setup"):
            pstate, bundle = sch.provider_setup(db, ctx("setup", PROVIDER))
        dstate = sch.device_load(bundle, "attacked", ctx("bundle", "attacked"))
        for (mid, im) in images:
            c = ctx(mid, "attacked")
            with ch.exchange(mid):
                payload = sch.device_prepare(dstate, im, c).payload
                got = ch.send(DEVICE, PROVIDER, "payload", payload)
                sch.provider_receive(pstate, got, c)
        views[role] = (ledger, pstate)
    ledger, pstate = views["deviating"]
    opened = {mid: v for mid, label, v in ledger.opened.get(PROVIDER, []) if label == "opened result"}
    for (mid, _), h in zip(images, hs):
        vals = np.frombuffer(opened[mid], "<u4")
        perm = np.random.default_rng([pstate["perm_seed"], zlib.crc32(mid.encode())]).permutation(len(vals))
        read = np.zeros(len(vals), bool)
        read[perm[vals == 0]] = True
        d = (listed ^ np.unpackbits(h)[None, :]).sum(axis=1)
        out["read"].append(read)
        out["truth"].append((d > tau) & (d <= tau + w))
        out["detected"].append(_second_view(views["honest"][0], mid) != _second_view(ledger, mid))
    return out


def near_miss_attack(run: SchemeRun, data: RunData, width: int | None = None) -> list[Measurement]:
    if not isinstance(run.scheme, TwoServerMPC) or data.hasher.bits + 1 >= P:
        return []
    limit = MAX_IMAGES if len(data.db) <= MAX_ENTRIES else 2  # 150 MB of shares per message at 10^5
    # one send per distinct benign image, in the order the workload first sends them
    seen, images = set(), []
    for m in data.workload.image_messages:
        if not m.known and m.item_id not in seen and len(images) < limit:
            seen.add(m.item_id)
            images.append((m.id, data.images[m.id]))
    tau = run.scheme.threshold
    w = min(width or tau + 1, tau + 1)  # tau + 1 test points: the factor count the second server sees
    p = run.scheme.describe_params() | {"party": PROVIDER, "list_size": len(data.db), "band": [tau + 1, tau + w],
                                        "security_model": "semi-honest; this is what a malicious provider gains",
                                        "corpus": data.config.corpus, "profile": data.config.profile}
    if not images or len(data.db) == 0:
        return [Measurement(run.name, "mpc_deviation_near_miss_rate", None, "rate", 0, params=p,
                            text="no benign image or an empty list")]
    r = attack(run.scheme, data.hasher, data.db, images, data.config.seed, width)
    n = len(images)
    hits = sum(bool(x.any()) for x in r["read"])
    exact = sum(bool((a == b).all()) for a, b in zip(r["read"], r["truth"]))
    det = sum(r["detected"])
    truth = np.stack(r["truth"])
    q = truth.mean(axis=0)
    bits = float(sum(_h2(x) for x in q))
    e_hit, e_acc, e_det = wilson(hits, n), wilson(exact, n), wilson(det, n)
    band = f"({tau}, {tau + w}]"
    return [
        Measurement(run.name, "mpc_deviation_near_miss_rate", e_hit.value, "rate", n, e_hit.ci_low, e_hit.ci_high, p,
                    text=f"deviating provider (test points {band} instead of [0, {tau}]) learns a list entry within "
                         f"the band for {hits}/{n} distinct benign images; the honest protocol reveals none"),
        Measurement(run.name, "mpc_deviation_accuracy", e_acc.value, "rate", n, e_acc.ci_low, e_acc.ci_high, p,
                    text=f"per-entry band answers equal the plaintext distances for {exact}/{n} images"),
        Measurement(run.name, "mpc_deviation_bits", bits, "bits", n, None, None, p,
                    text=f"plug-in entropy of the {truth.shape[1]} per-entry band indicators over {n} images, summed "
                         f"(upper bound of their joint entropy); one bit per entry at most"),
        Measurement(run.name, "mpc_deviation_detected", e_det.value, "rate", n, e_det.ci_low, e_det.ci_high,
                    p | {"party": SECOND_SERVER},
                    text=f"second server's view (labels, sizes, order) differs from the honest run for {det}/{n}"),
    ]


__all__ = ["DeviatingProvider", "attack", "near_miss_attack"]
