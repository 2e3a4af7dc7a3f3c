"""Leakage probes: attacks on each party's raw view, each with a success measure, n and interval.

Every probe reads :mod:`views` only (raw received bytes, opened plaintexts, observer sizes);
the ledger's ``learned`` entries are never read here. Each figure is labelled ``measured``
and carries ``params["party"]``; the scheme's leakage declaration is emitted beside it with
label ``declared`` (:func:`declared_leakage`). docs/leakage.md gives each probe's threat
model, method, estimator and limits.

- ``linkability_advantage``: P(linked | two sends of one benign image) - P(linked | sends of
  two different benign images). One pair per repeated image and disjoint pairs of different
  images, so pairs are independent; n = repeated images; Newcombe interval of the difference.
  Rule: the two views share a rare 8-byte token (content-defined sample of all windows; tokens
  in more than half the party's messages are structure and dropped), or hashes the party
  recovered lie within the scheme's threshold.
- ``verdict_inference_advantage``: TPR - FPR of a lookup-table attacker on the sizes and
  flights a party (or a link observer) sees per image message (the better of exact sizes and
  transfer counts), 5-fold cross-validated, one message per distinct image; label = the
  scheme's plaintext match bit.
- ``verdict_inference_content_advantage``: the same labels, a logistic-regression attacker on the
  bytes a party received and opened (head and tail of each value), 5-fold cross-validated.
- ``hash_bits_recovered``: per benign image, bits of its hash recoverable from the view:
  the hash verbatim (all bits), or a real-valued intermediate median-thresholded, scored as
  bits x (1 - H2(bit error rate)) (the capacity of a binary symmetric channel).
- ``chunk_bits_revealed`` / ``benign_voucher_open_rate``: chunked PSI (see :mod:`chunks`).
- ``below_threshold_advantage``: account-threshold schemes, per k < t (see :mod:`counting`).
- ``mpc_deviation_*``: the deviating-server attack on two-server MPC (see :mod:`mpc_deviation`).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from e2eebench.protocols.framework import LEAKS, declared_leaks
from e2eebench.evaluation.leakage.attackers import (FOLDS, _params, content_advantage, content_attack,  # noqa: F401
                                                    content_features, lookup_attack, newcombe)
from e2eebench.evaluation.leakage.views import MessageView, observer_features, party_views
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import mean_ci, wilson
from e2eebench.evaluation.run.store import Measurement

TOKEN = 8
SAMPLE_ABOVE = 4096       # chunks longer than this: aligned words, 1/16 of them (content-defined)
_MULT = np.uint64(0x9E3779B97F4A7C15)


# -- tokens ----------------------------------------------------------------------------------
def tokens(chunks: list[bytes]) -> np.ndarray:
    """Sorted unique 8-byte window values of the chunks (every offset; long chunks: a 1/16
    content-defined sample of their aligned words)."""
    parts = []
    for c in chunks:
        if len(c) < TOKEN:
            continue
        if len(c) > SAMPLE_ABOVE:  # bodies: 8-byte-aligned words (zero copy), a 1/16 sample by value
            w = np.frombuffer(c, "<u8", count=len(c) // TOKEN)
            w = w[((w * _MULT) >> np.uint64(60)) == 0]
        else:
            a = np.frombuffer(c, np.uint8)
            w = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(a, TOKEN)).view("<u8").ravel()
        parts.append(w)
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


# -- hash recovery ---------------------------------------------------------------------------
def _h2(p: float) -> float:
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def recover_hash(view: MessageView, true_hash: np.ndarray, image: bytes | None = None) -> tuple[float, np.ndarray | None]:
    """Bits of ``true_hash`` the view yields, and the recovered packed hash (or None).

    The image's own encoding in the view gives every bit (the attacker hashes it). An
    intermediate counts only when its thresholded bits agree with the hash significantly better
    than chance (bit error rate below 1/2 - 1.5/sqrt(bits), i.e. 3 sigma): random bytes read as
    floats do not."""
    return recover(view, true_hash, image)[:2]


def recover(view: MessageView, true_hash: np.ndarray,
            image: bytes | None = None) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """(bits, recovered hash, the intermediate's values if that is where the bits came from)."""
    hb = true_hash.tobytes()
    bits = len(hb) * 8
    chunks = view.chunks()
    if any(hb in c or hb.hex().encode() in c or (image is not None and image in c) for c in chunks):
        return float(bits), true_hash, None
    best, best_h, best_f = 0.0, None, None
    limit = 0.5 - 1.5 / math.sqrt(bits)
    for c in chunks:
        for dt in ("<f2", "<f4", "<f8"):
            if len(c) != bits * np.dtype(dt).itemsize:
                continue
            with np.errstate(all="ignore"):
                f = np.frombuffer(c, dt).astype(np.float64)
            if not np.isfinite(f).all() or np.ptp(f) == 0:
                continue
            h = np.packbits((f > np.median(f)).astype(np.uint8))
            ber = float(np.unpackbits(h ^ true_hash).mean())
            got = bits * (1.0 - _h2(ber)) if ber < limit else 0.0
            if got > best:
                best, best_h, best_f = got, h, f
    return best, best_h, best_f


def _benign_firsts(run: SchemeRun, data: RunData) -> dict[str, list[str]]:
    """Benign item id -> ids of the image messages sending it that this scheme ran, in order."""
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    out: dict[str, list[str]] = defaultdict(list)
    for m in data.workload.image_messages:
        if not m.known and m.id in ran:
            out[m.item_id].append(m.id)
    return dict(out)


def hash_recovery(run: SchemeRun, data: RunData, views: dict) -> tuple[list[Measurement], dict]:
    items = _benign_firsts(run, data)
    out, recovered = [], {}
    for party, pv in sorted(views.items()):
        vals = []
        rec: dict[str, np.ndarray] = {}
        for item, mids in items.items():
            per = []
            for mid in mids:
                bits, h = recover_hash(pv.get(mid, MessageView()), data.image_hash(mid), data.png[mid])
                per.append(bits)
                if h is not None:
                    rec[mid] = h
            vals.append(per[0])  # one message per distinct image
        recovered[party] = rec
        e = mean_ci(vals)
        out.append(Measurement(run.name, "hash_bits_recovered", e.value if e.n else None, "bits", e.n,
                               e.ci_low, e.ci_high, _params(run, data, party),
                               text=f"per distinct benign image, from its first send: hash verbatim, or an "
                                    f"intermediate median-thresholded (bits x (1 - H2(BER))); "
                                    f"{sum(v > 0 for v in vals)}/{len(vals)} images yield bits"))
    return out, recovered


# -- linkability -----------------------------------------------------------------------------
def _pair_sets(run: SchemeRun, data: RunData) -> dict[str, tuple[list, list]]:
    """Independent pairs: "any" = the first two sends of each repeated benign image vs first sends
    of two different images (disjoint pairs); "same-sender" = two sends of one image by one
    account vs two different images sent by one account (a device's own repeats)."""
    items = _benign_firsts(run, data)
    sender = {m.id: m.sender for m in data.workload.image_messages}
    repeated = [tuple(mids[:2]) for mids in items.values() if len(mids) >= 2]
    firsts = [mids[0] for mids in items.values()]
    diff = [(firsts[i], firsts[i + 1]) for i in range(0, len(firsts) - 1, 2)]
    same_s, by_sender = [], defaultdict(list)
    for mids in items.values():
        per: dict[str, list[str]] = defaultdict(list)
        for mid in mids:
            per[sender[mid]].append(mid)
        pair = next((tuple(v[:2]) for v in per.values() if len(v) >= 2), None)
        if pair:
            same_s.append(pair)
        for s, v in per.items():
            by_sender[s].append(v[0])
    diff_s = [(v[i], v[i + 1]) for v in by_sender.values() for i in range(0, len(v) - 1, 2)]
    return {"any": (repeated, diff), "same-sender": (same_s, diff_s)}


def linkability(run: SchemeRun, data: RunData, views: dict, recovered: dict) -> list[Measurement]:
    sets = _pair_sets(run, data)
    thr = run.scheme.threshold
    out = []
    for party, pv in sorted(views.items()):
        toks = {mid: tokens(v.chunks()) for mid, v in pv.items()}
        if toks:
            allt = np.concatenate(list(toks.values()))
            u, c = np.unique(allt, return_counts=True)
            common = u[c > max(2, len(toks) // 2)]
            toks = {mid: np.setdiff1d(t, common, assume_unique=True) for mid, t in toks.items()}
        rec = recovered.get(party, {})

        def linked(a: str, b: str) -> bool:
            ta, tb = toks.get(a), toks.get(b)
            if ta is not None and tb is not None and len(np.intersect1d(ta, tb, assume_unique=True)):
                return True
            ha, hb = rec.get(a), rec.get(b)
            return ha is not None and hb is not None and int(np.unpackbits(ha ^ hb).sum()) <= thr

        for kind, (repeated, diff) in sets.items():
            ks = sum(linked(a, b) for a, b in repeated)
            kd = sum(linked(a, b) for a, b in diff)
            es, ed = wilson(ks, len(repeated)), wilson(kd, len(diff))
            lo, hi = newcombe(es, ed)
            val = es.value - ed.value if repeated and diff else None
            out.append(Measurement(run.name, "linkability_advantage", val, "advantage", len(repeated), lo, hi,
                                   _params(run, data, party) | {"baseline_pairs": len(diff), "pairs": kind},
                                   text=f"{kind}: same-image pairs linked {ks}/{len(repeated)}, different-image "
                                        f"pairs {kd}/{len(diff)} (chance baseline); rule: a shared rare 8-byte "
                                        f"token or recovered hashes within {thr}"))
    return out


# -- verdict inference -----------------------------------------------------------------------
def _labels(run: SchemeRun, data: RunData) -> dict[str, bool]:
    """One image message per distinct image (its first send) -> the scheme's plaintext match bit."""
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    seen, out = set(), {}
    for m in data.workload.image_messages:
        if m.id in ran and m.item_id not in seen:
            seen.add(m.item_id)
            out[m.id] = bool(run.scheme.plaintext_match(data.db, data.image_hash(m.id)))
    return out


def _shape(f: tuple) -> tuple:
    """The coarse signature of a feature: transfers per direction (observer: (sender, size)
    items) or the number of transfers received and values opened (party: two size tuples)."""
    if f and isinstance(f[0], tuple) and f[0] and isinstance(f[0][0], str):
        out: dict = defaultdict(int)
        for sender, _ in f:
            out[sender] += 1
        return tuple(sorted(out.items()))
    return tuple(len(x) for x in f)


def _advantage(run, data, metric, party, features, labels, text) -> Measurement:
    """The better of two lookup attackers: on the exact features, and on their coarse shape
    (transfer counts, which generalise where exact sizes vary from message to message)."""
    shapes = {k: _shape(f) for k, f in features.items()}
    best = None
    for feats in (features, shapes):
        r = lookup_attack(feats, labels, data.config.seed)
        if best is None or (r[0] / max(1, r[1]) - r[2] / max(1, r[3])) > (best[0] / max(1, best[1]) - best[2] / max(1, best[3])):
            best = r
    tp, npos, fp, nneg = best
    a, b = wilson(tp, npos), wilson(fp, nneg)
    lo, hi = newcombe(a, b)
    val = a.value - b.value if npos and nneg else None
    return Measurement(run.name, metric, val, "advantage", npos + nneg, lo, hi,
                       _params(run, data, party) | {"positives": npos},
                       text=f"{text}; TPR {tp}/{npos}, FPR {fp}/{nneg} (chance: 0)")


def verdict_inference(run: SchemeRun, data: RunData, views: dict) -> list[Measurement]:
    labels = _labels(run, data)
    out = []
    for party, pv in sorted(views.items()):
        feats = {mid: (tuple(v.sizes), tuple(len(b) for _, b in v.opened)) for mid, v in pv.items()}
        out.append(_advantage(run, data, "verdict_inference_advantage", party, feats, labels,
                              "sizes of what it received and opened (envelopes: payload length)"))
    for (a, b), seqs in sorted(observer_features(run, data).items()):
        out.append(_advantage(run, data, "verdict_inference_advantage", f"observer:{a}-{b}", seqs, labels,
                              "direction and size of every transfer on the link (envelopes: payload length)"))
    return out


# -- verdict inference on contents ----------------------------------------------------------
def _detection_chunks(v: MessageView) -> list[bytes]:
    body = {id(b) for b in v.bodies}
    return [c for c in v.raw if id(c) not in body] + [b for _, b in v.opened]


def content_verdict_inference(run: SchemeRun, data: RunData, views: dict) -> list[Measurement]:
    """Per party: can it read the verdict from the *contents* of what it received and opened
    (not only sizes; envelope bodies left out)? Logistic regression on byte features, one message
    per distinct image."""
    labels = _labels(run, data)
    mids = sorted(labels)
    y = np.array([labels[m] for m in mids])
    out = []
    for party, pv in sorted(views.items()):
        # without the envelope bodies: the message itself is not what detection adds (known and
        # benign images differ by the workload's transforms), as for the size attacker
        x = np.stack([content_features(_detection_chunks(pv[m]) if m in pv else []) for m in mids]) if mids else None
        if x is None:
            continue
        m = content_advantage(run, data, "verdict_inference_content_advantage", party, x, y,
                              "logistic regression on the first and last 32 bytes of each received and opened "
                              "value, 5-fold cross-validated")
        if m is not None:
            out.append(m)
    return out


# -- declarations ----------------------------------------------------------------------------
PROBE_QUANTITY = {"linkability_advantage": "link", "verdict_inference_advantage": "verdict",
                  "verdict_inference_content_advantage": "verdict", "synthetic_distinguish_advantage": "verdict",
                  "hash_bits_recovered": "hash", "chunk_bits_revealed": "chunks",
                  "benign_voucher_open_rate": "image", "below_threshold_advantage": "count"}


def declared_leakage(run: SchemeRun, data: RunData) -> list[Measurement]:
    """The scheme's leakage function, per party, labelled declared (1 = may learn, 0 = must not)."""
    out = []
    text = getattr(run.scheme, "leakage_text", {})
    for party in sorted(set(run.scheme.parties) | set(run.scheme.leakage)):
        allowed = declared_leaks(run.scheme.leakage, party)
        for q in LEAKS:
            out.append(Measurement(run.name, f"declared_{q}", float(q in allowed), "bool", 1,
                                   params=_params(run, data, party), label="declared",
                                   text=text.get(party, "nothing" if not allowed else None)))
    return out


def exceeds_declaration(m: Measurement, scheme) -> bool:
    """A measured probe figure whose interval lies above zero for a quantity not declared."""
    q = PROBE_QUANTITY.get(m.metric)
    party = str(m.params.get("party", ""))
    if q is None or m.value is None or m.label != "measured":
        return False
    allowed = declared_leaks(scheme.leakage, "observer" if party.startswith("observer:") else party)
    if q in allowed and m.params.get("declared_bound") is None:
        return False
    lo = m.ci_low if m.ci_low is not None else m.value
    bound = m.params.get("declared_bound")
    if bound is not None:  # a declared size (e.g. tpsi-ad's noised count): the interval must reach it
        return lo > float(bound)
    return lo > 0


def adversary_probes(run: SchemeRun, data: RunData) -> list[Measurement]:
    from e2eebench.evaluation.leakage.chunks import chunk_probes
    from e2eebench.evaluation.leakage.counting import below_threshold
    from e2eebench.evaluation.leakage.mpc_deviation import near_miss_attack
    views = party_views(run, data)
    hashes, recovered = hash_recovery(run, data, views)
    return (declared_leakage(run, data) + hashes + linkability(run, data, views, recovered)
            + verdict_inference(run, data, views) + content_verdict_inference(run, data, views)
            + chunk_probes(run, data, views) + below_threshold(run, data)
            + near_miss_attack(run, data))
