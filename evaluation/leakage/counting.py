"""Below-threshold counting probe: can the provider tell an account with k < t matches from one
with none, before the account threshold lets it read anything?

Why a probe traffic of its own: a run's workload has a handful of offender accounts, far too few
to estimate an advantage per k. The probe drives the scheme's real roles (device_load,
device_prepare, provider_receive over a recording channel) for ``ACCOUNTS`` accounts per k in
0..t-1, each sending ``n`` distinct images of which exactly k are on the list (the run's own
list and benign images; ``n`` is the run's median number of distinct images per account, at
least t). The attacker reads only the provider's raw view (bytes received and plaintexts it
opened with its own keys): its statistic per account is the number of messages for which it
opened anything. Success measure: TPR - FPR of the cross-validated lookup attacker on that
count (k-accounts against 0-accounts, balanced, so the majority rule per count is the
Bayes-optimal test), Newcombe interval; n = distinct accounts. The scheme's declared bound
(``count_advantage_bound``) goes beside it; the conformance suite fails a scheme whose
interval lies above its bound.

Hashes are computed once per image (a caching wrapper around the run's hasher): the protocol
steps all run; only the repeated perceptual hash of the same picture is reused.
"""
from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

import numpy as np

from e2eebench.protocols.channel import DEVICE, PROVIDER, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.registry import scheme_class
from e2eebench.evaluation.leakage.attackers import lookup_attack, newcombe
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import wilson
from e2eebench.evaluation.run.store import Measurement

ACCOUNTS = 80   # accounts per k (and with none): +-0.15 on the advantage at worst


class CachedHasher:
    """The run's hasher, with the hash of each probe image computed once (keyed by the object)."""

    def __init__(self, hasher, known: dict[int, np.ndarray]):
        self._h, self._known = hasher, known

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)

    def hash(self, image) -> np.ndarray:
        got = self._known.get(id(image))
        return got if got is not None else self._h.hash(image)


def images_per_account(data: RunData, t: int) -> int:
    per: dict[str, set[str]] = defaultdict(set)
    for m in data.workload.image_messages:
        per[m.sender].add(m.item_id)
    return max(t, int(np.median([len(v) for v in per.values()])) if per else t)


def count_views(scheme, data: RunData, t: int, n: int, accounts: int,
                seed: int) -> tuple[dict[int, list[int]], list[tuple[bytes, bool]]]:
    """(k -> per account, how many of its n messages the provider opened anything for;
    every value the provider opened, with whether its image was listed)."""
    listed = list(data.known)
    cache = {id(it.image): h for it, h in zip(listed, data.hasher.hash_many([it.image for it in listed]))}
    bh = data.hasher.hash_many([it.image for it in data.benign])
    benign = [it for it, h in zip(data.benign, bh) if not scheme.plaintext_match(data.db, h)]
    cache |= {id(it.image): h for it, h in zip(data.benign, bh)}
    probe = type(scheme)(CachedHasher(data.hasher, cache), scheme.threshold, **scheme.p)
    if len(listed) < t - 1 or len(benign) < n:
        return {}, []
    ledger = Ledger()
    channel, clock = Channel(ledger), PartyClock()
    rng = np.random.default_rng([seed, 0xC0])

    def ctx(mid: str, acct: str) -> MessageContext:
        return MessageContext(mid, acct, channel, clock, np.random.default_rng([seed, zlib.crc32(mid.encode())]))

    with channel.exchange("setup"):
        pstate, bundle = probe.provider_setup(data.db, ctx("setup", PROVIDER))
    owner: dict[str, tuple[int, str]] = {}
    is_listed: dict[str, bool] = {}
    for k in range(t):
        for a in range(accounts):
            acct = f"count-k{k}-a{a}"
            with channel.exchange(f"bundle:{acct}"):
                got = channel.send(PROVIDER, DEVICE, "bundle", bundle)
                dstate = probe.device_load(got, acct, ctx(f"bundle:{acct}", acct))
            pick = [listed[i] for i in rng.choice(len(listed), k, replace=False)] + \
                   [benign[i] for i in rng.choice(len(benign), n - k, replace=False)]
            for j in rng.permutation(n):
                mid = f"{acct}-m{j}"
                owner[mid] = (k, acct)
                is_listed[mid] = j < k
                c = ctx(mid, acct)
                with channel.exchange(mid):
                    payload = probe.device_prepare(dstate, pick[j].image, c).payload
                    received = channel.send(DEVICE, PROVIDER, "payload", payload)
                    probe.provider_receive(pstate, received, c)
    opened = [(mid, v) for mid, _, v in ledger.opened.get(PROVIDER, []) if mid in owner]
    opened_for = {mid for mid, _ in opened}
    counts: dict[str, int] = defaultdict(int)
    for mid, (k, acct) in owner.items():
        counts[acct] += mid in opened_for
    out: dict[int, list[int]] = defaultdict(list)
    for acct in sorted(counts):
        out[int(acct.split("-k")[1].split("-")[0])].append(counts[acct])
    return dict(out), [(v, is_listed[mid]) for mid, v in opened]


def below_threshold(run: SchemeRun, data: RunData, accounts: int = ACCOUNTS) -> list[Measurement]:
    """``below_threshold_advantage`` per k in 1..t-1 (party: provider), measured, with the scheme's
    declared bound in params (and as a ``declared`` figure)."""
    param = getattr(run.scheme, "account_threshold", None)
    if param is None:
        return []
    t = int(run.scheme.p[param])
    if t < 2:
        return []
    n = images_per_account(data, t)
    views, opened = count_views(run.scheme, data, t, n, accounts, data.config.seed)
    base = run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile,
                                           "party": PROVIDER, "list_size": len(data.db)}
    out = []
    zero = views.get(0, [])
    for k in range(1, t):
        pos = views.get(k, [])
        bound = float(run.scheme.count_advantage_bound(n, k))
        p = base | {"k": k, "images_per_account": n, "declared_bound": round(bound, 6)}
        if not pos or not zero:
            out.append(Measurement(run.name, "below_threshold_advantage", None, "advantage", 0, params=p,
                                   text="too few list or benign images for the probe traffic"))
            continue
        feats = {f"p{i}": (c,) for i, c in enumerate(pos)} | {f"z{i}": (c,) for i, c in enumerate(zero)}
        labels = {f"p{i}": True for i in range(len(pos))} | {f"z{i}": False for i in range(len(zero))}
        tp, npos, fp, nneg = lookup_attack(feats, labels, data.config.seed)
        a, b = wilson(tp, npos), wilson(fp, nneg)
        lo, hi = newcombe(a, b)
        out.append(Measurement(
            run.name, "below_threshold_advantage", a.value - b.value, "advantage", npos + nneg, lo, hi, p,
            text=f"provider's raw view: opened-voucher count per account, {k} vs 0 listed among {n} distinct "
                 f"images; TPR {tp}/{npos}, FPR {fp}/{nneg} (chance: 0); declared bound {bound:.3f}"))
        out.append(Measurement(run.name, "declared_below_threshold_advantage", bound, "advantage", 1, params=p,
                               label="declared", text="count_advantage_bound(n, k): TV distance of the counts"))
    out += synthetic_distinguish(run, data, opened, base)
    return out


def synthetic_distinguish(run: SchemeRun, data: RunData, opened: list[tuple[bytes, bool]],
                          base: dict) -> list[Measurement]:
    """Below t, can the provider tell an opened real voucher from an opened synthetic one by
    its contents (share, DHF value, inner ciphertext)? Declared: no (bound 0)."""
    from e2eebench.evaluation.leakage.attackers import content_advantage, content_features
    if not opened:
        return []
    x = np.stack([content_features([v]) for v, _ in opened])
    y = np.array([lab for _, lab in opened])
    m = content_advantage(run, data, "synthetic_distinguish_advantage", PROVIDER, x, y,
                          "opened outer layers below t, real (listed image) vs synthetic: logistic regression "
                          "on their bytes, 5-fold cross-validated",
                          {k: v for k, v in base.items() if k != "party"} | {"declared_bound": 0.0})
    return [m] if m is not None else []


__all__ = ["below_threshold", "count_views", "CachedHasher", "images_per_account"]
