"""From outcomes and party views to measurements (accuracy, leakage, cost).

Metric names are fixed by the design; each measurement carries its unit, sample size and
interval. The measurement stages (leakage probes, pair accuracy, security profile, EU scale)
add theirs as ``MeasureFn`` functions handed to :func:`measure` (the API composes them), so this
stage never imports a stage above it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from e2eebench.protocols.channel import PROVIDER, SERVER_PARTIES
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import mean_ci, wilson
from e2eebench.evaluation.run.store import Measurement

MeasureFn = Callable[[SchemeRun, RunData], list[Measurement]]


def _rate(scheme: str, metric: str, k: int, n: int, params: dict) -> Measurement:
    e = wilson(k, n)
    return Measurement(scheme, metric, e.value if n else None, "rate", n, e.ci_low, e.ci_high, params)


def _mean(scheme: str, metric: str, values, unit: str, params: dict, scale: float = 1.0) -> Measurement:
    e = mean_ci(np.asarray(list(values), float) * scale)
    return Measurement(scheme, metric, e.value if e.n else None, unit, e.n, e.ci_low, e.ci_high, params)


def transform_family(spec: str) -> str:
    return "+".join(part.split(":")[0] for part in spec.split("+"))


PREVALENCES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)   # assumed shares of known images among images sent
HEADLINE_PREVALENCE = 1e-4                    # the summary's precision row (an assumption, stated)


def per_image(outcomes) -> tuple[float, int, int]:
    """Per-image aggregation: each distinct source image contributes the share of its sends
    that were flagged, so an image resent 43 times weighs once. Returns (k, distinct images,
    messages); k may be fractional. A Wilson interval on (k, distinct images) is conservative
    for the per-image mean, since a share in [0, 1] has variance at most p (1 - p)."""
    by: dict[str, list[bool]] = {}
    for o in outcomes:
        by.setdefault(o.item_id or o.message_id, []).append(bool(o.detected))
    return sum(sum(v) / len(v) for v in by.values()), len(by), len(outcomes)


def _image_rate(scheme: str, metric: str, outcomes, params: dict) -> Measurement:
    k, n, msgs = per_image(outcomes)
    m = _rate(scheme, metric, k, n, params | {"unit": "distinct image", "messages": msgs})
    if n and k == 0:
        what = "detected" if metric == "recall" else "flagged"
        m.text = f"0 of {n} distinct images {what}: bounded, <= {m.ci_high:.2g} (Wilson 95 % upper end)"
    return m


def precision_at(tpr: float, fpr: float, prevalence: float) -> float:
    """Share of flags that are true when a share ``prevalence`` of images sent is known."""
    tp, fp = tpr * prevalence, fpr * (1 - prevalence)
    return tp / (tp + fp) if tp + fp > 0 else float("nan")


def precision_curve(scheme: str, recall: Measurement, fpr: Measurement, params: dict) -> list[Measurement]:
    """Precision over assumed prevalences (modelled), from the measured per-image TPR and FPR:
    the low end takes the TPR's low and the FPR's high end, the high end the reverse (each end
    a 95 % end of one measured rate; not a joint 95 % interval)."""
    out = []
    if recall.value is None or fpr.value is None:
        return [Measurement(scheme, "precision", None, "rate", 0, params=params | {"slice": "all"},
                            text="no TPR or FPR measured: precision undefined", label="modelled")]
    for pi in PREVALENCES + ((HEADLINE_PREVALENCE,) if HEADLINE_PREVALENCE not in PREVALENCES else ()):
        v = precision_at(recall.value, fpr.value, pi)
        lo = precision_at(recall.ci_low or 0.0, fpr.ci_high if fpr.ci_high is not None else 1.0, pi)
        hi = precision_at(recall.ci_high if recall.ci_high is not None else 1.0, fpr.ci_low or 0.0, pi)
        text = (f"modelled at an assumed prevalence {pi:g} of known images among images sent (not the "
                f"workload's base rate), from TPR n={recall.n} and FPR n={fpr.n} distinct images")
        if not fpr.value:
            text += "; no false flag measured, so the point value is 1 and only the low end is informative"
        p = params | {"prevalence": pi, "tpr": recall.value, "fpr": fpr.value, "n_known_images": recall.n,
                      "n_benign_images": fpr.n}
        for sl in ((f"prevalence={pi:g}",) + (("all",) if pi == HEADLINE_PREVALENCE else ())):
            out.append(Measurement(scheme, "precision", None if np.isnan(v) else v, "rate", min(recall.n, fpr.n),
                                   None if np.isnan(lo) else lo, None if np.isnan(hi) else hi,
                                   p | {"slice": sl}, text, "modelled"))
    return out


def accuracy_measurements(run: SchemeRun, params: dict) -> list[Measurement]:
    """Recall and FPR per distinct image (see per_image), FPR on the hard-negative families,
    precision over assumed prevalences, and the per-message rates, labelled so."""
    from e2eebench.evaluation.data.hard_negatives import is_hard_negative, kind_of, sibling_of
    s = run.name
    im = [o for o in run.outcomes if o.has_image]
    pos = [o for o in im if o.known]
    neg = [o for o in im if not o.known]
    recall = _image_rate(s, "recall", pos, params | {"slice": "all"})
    fpr = _image_rate(s, "fpr", neg, params | {"slice": "all"})
    out = [recall, fpr]
    hard = [o for o in neg if is_hard_negative(o.item_id)]
    if hard:
        out.append(_image_rate(s, "fpr", hard, params | {"slice": "hard negatives"}))
        out.append(_image_rate(s, "fpr", [o for o in neg if not is_hard_negative(o.item_id)],
                               params | {"slice": "ordinary benign"}))
        sib = [o for o in hard if sibling_of(o.item_id)]
        if sib:
            out.append(_image_rate(s, "fpr", sib, params | {"slice": "siblings of list items"}))
        kinds: dict[str, list] = {}
        for o in hard:
            kinds.setdefault(kind_of(o.item_id), []).append(o)
        for k, os_ in sorted(kinds.items()):
            out.append(_image_rate(s, "fpr", os_, params | {"slice": f"hard:{k}"}))
    for metric, group, k in (("recall", pos, sum(o.detected for o in pos)), ("fpr", neg, sum(o.detected for o in neg))):
        m = _rate(s, metric, k, len(group), params | {"slice": "per message", "unit": "message"})
        m.text = "per message: resends of one image are not independent; the distinct-image row is the one to quote"
        out.append(m)
    out += precision_curve(s, recall, fpr, params)
    tp, fp = sum(o.detected for o in pos), sum(o.detected for o in neg)
    if tp + fp:
        base = round(len(pos) / max(1, len(im)), 4)
        m = _rate(s, "precision", tp, tp + fp, params | {"slice": "workload base rate", "base_rate": base,
                                                         "unit": "message"})
        m.text = (f"per message at this workload's own base rate {base} (a test-bed choice, orders of magnitude "
                  "above any real prevalence): not a figure about the world")
        out.append(m)
    fams: dict[str, list] = {}
    for o in pos:
        fams.setdefault(transform_family(o.transform), []).append(o)
    for fam, os_ in sorted(fams.items()):
        out.append(_image_rate(s, "recall", os_, params | {"slice": fam}))
    return out


def _by_key(values: list[dict], keys: list[str]) -> dict[str, list[float]]:
    """Per key, one value per message (0 where the message did not touch it)."""
    return {k: [float(v.get(k, 0)) for v in values] for k in keys}


def _split_leg(name: str) -> dict[str, str]:
    sender, _, receiver = name.partition("->")
    return {"leg": name, "sender": sender, "receiver": receiver}


def cost_measurements(run: SchemeRun, params: dict) -> list[Measurement]:
    """Cost per image message, per party and per leg, plus setup and the period's end.

    ``server_ms`` is the sum of ``cpu_ms`` over every non-device party (provider, enclave,
    second server, dealer, third party, escrow); ``rounds`` counts the round trips the sending
    device waits for and ``server_rounds`` the flights between non-device parties."""
    s = run.name
    im = [o for o in run.outcomes if o.has_image]
    p = params | {"list_size": run.list_size, "synthetic_padding": run.synthetic}
    parties = sorted({k for o in im for k in o.party_s})
    legs = sorted({k for o in im for k in o.leg_bytes})
    cpu = _by_key([o.party_s for o in im], parties)
    per_leg = _by_key([o.leg_bytes for o in im], legs)
    between_servers = [k for k in legs if _split_leg(k)["sender"] in SERVER_PARTIES
                       and _split_leg(k)["receiver"] in SERVER_PARTIES]
    out = [
        _mean(s, "client_ms", (o.device_s for o in im), "ms", p, 1e3),
        _mean(s, "server_ms", (o.server_s for o in im), "ms", p | {"parties": "all non-device"}, 1e3),
        _mean(s, "bytes_up", (o.bytes_up for o in im), "bytes", p),
        _mean(s, "bytes_down", (o.bytes_down for o in im), "bytes", p),
        _mean(s, "rounds", (o.rounds for o in im), "round trips", p),
        _mean(s, "server_rounds", (o.server_rounds for o in im), "flights", p),
        _mean(s, "server_bytes", (sum(o.leg_bytes.get(k, 0) for k in between_servers) for o in im), "bytes", p),
        _mean(s, "bytes_total", (sum(o.leg_bytes.values()) for o in im), "bytes", p),
        _mean(s, "detection_bytes_up", (o.detection_bytes_up for o in im), "bytes", p),
        _mean(s, "detection_bytes_down", (o.detection_bytes_down for o in im), "bytes", p),
        Measurement(s, "device_storage_bytes", float(run.bundle_bytes + run.device_extra_bytes), "bytes", 1,
                    params=p | {"bundle_bytes": run.bundle_bytes, "own_key_bytes": run.device_extra_bytes}),
        Measurement(s, "bundle_bytes", float(run.bundle_bytes), "bytes", 1, params=p),
        Measurement(s, "setup_s", run.setup_s, "s", 1, params=p | {"parties": "all non-device"}),
        _mean(s, "device_setup_s", run.device_load_s, "s", p),
        Measurement(s, "finalize_s", sum(v for k, v in run.finalize_party_s.items() if k in SERVER_PARTIES),
                    "s", 1, params=p | {"parties": "all non-device"}),
    ]
    out += [_mean(s, "cpu_ms", cpu[k], "ms", p | {"party": k}, 1e3) for k in parties]
    out += [_mean(s, "leg_bytes", per_leg[k], "bytes", p | _split_leg(k)) for k in legs]
    out += [Measurement(s, "setup_cpu_s", v, "s", 1, params=p | {"party": k})
            for k, v in sorted(run.setup_party_s.items())]
    out += [Measurement(s, "setup_leg_bytes", float(v), "bytes", 1, params=p | _split_leg(k))
            for k, v in sorted(run.setup_leg_bytes.items())]
    out += [Measurement(s, "finalize_cpu_s", v, "s", 1, params=p | {"party": k})
            for k, v in sorted(run.finalize_party_s.items())]
    return out


def _run_ids(run: SchemeRun) -> set[str]:
    """Ids of the image messages this scheme actually ran (a sampled run runs only some)."""
    return {o.message_id for o in run.outcomes if o.has_image}


def provider_raw_view(run: SchemeRun):
    """The provider's raw view: every byte it received, and every plaintext it opened with its
    own keys (recorded as bytes where it decrypted). Never the ledger's ``learned`` entries."""
    for _, data in run.ledger.received.get(PROVIDER, []):
        yield data
    for _, _, data in run.ledger.opened.get(PROVIDER, []):
        yield data


class NeedleScan:
    """Exact multi-needle search over byte chunks, vectorised: every needle (>= 8 bytes) is keyed
    by its first 8 bytes (shorter ones are searched with ``in``); each 8-byte window of a chunk is looked up among the keys (one sorted
    search), and a window that matches a key is compared with that needle in full. A needle
    occurs in a chunk exactly when it is reported: its prefix matches where it starts."""

    def __init__(self, needles: list[bytes]) -> None:
        self.needles = needles
        self._short = [j for j, n in enumerate(needles) if len(n) < 8]   # found with ``in``
        keys = np.array([np.frombuffer(n[:8], "<u8")[0] if len(n) >= 8 else 0 for n in needles], np.uint64)
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]
        self._low = np.zeros(1 << 16, bool)          # a first cut on each key's low 16 bits
        self._low[(self._keys & np.uint64(0xFFFF)).astype(np.intp)] = True

    def found(self, chunk: bytes) -> set[int]:
        """Indices of the needles that occur in ``chunk``."""
        out = {j for j in self._short if self.needles[j] in chunk}
        if len(chunk) < 8 or not self.needles:
            return out
        for r in range(8):   # the windows starting at r, r + 8, ...: one zero-copy view each
            count = (len(chunk) - r) // 8
            if count <= 0:
                continue
            w = np.frombuffer(chunk, "<u8", count=count, offset=r)
            cand = np.flatnonzero(self._low[(w & np.uint64(0xFFFF)).astype(np.intp)])
            if not len(cand):
                continue
            lo = np.searchsorted(self._keys, w[cand], "left")
            ok = (lo < len(self._keys)) & (self._keys[np.minimum(lo, len(self._keys) - 1)] == w[cand])
            for k, i in zip(cand[ok].tolist(), lo[ok].tolist()):
                pos, key = r + 8 * k, w[k]
                while i < len(self._keys) and self._keys[i] == key:
                    j = int(self._order[i])
                    n = self.needles[j]
                    if j not in out and len(n) >= 8 and chunk[pos:pos + len(n)] == n:
                        out.add(j)
                    i += 1
        return out


def canary_scan(run: SchemeRun, data: RunData) -> dict[str, int]:
    """Look for benign image bytes and benign hashes (raw and hex) in the provider's raw view, over
    the benign image messages this scheme ran (n counts only those). One vectorised pass of a
    :class:`NeedleScan` over the view: time linear in the view plus the needles."""
    ran = _run_ids(run)
    benign_msgs = [m for m in data.workload.image_messages if not m.known and m.id in ran]
    needles: dict[bytes, set] = {}
    hashes = set()
    for m in benign_msgs:
        png = data.png[m.id]
        needle = png[len(png) // 2: len(png) // 2 + 48]
        if needle:
            needles.setdefault(needle, set()).add(("image", m.id))
        h = data.image_hash(m.id).tobytes()
        hashes.add(h)
        for form in (h, h.hex().encode()):
            needles.setdefault(form, set()).add(("hash", h))
    found_img, found_hash = set(), set()
    if needles:
        keys = list(needles)
        scan = NeedleScan(keys)
        for chunk in provider_raw_view(run):
            for j in scan.found(chunk):
                for kind, ref in needles[keys[j]]:
                    (found_img if kind == "image" else found_hash).add(ref)
    return {"images": len(benign_msgs), "image_hits": len(found_img), "hashes": len(hashes),
            "hash_hits": len(found_hash)}


def leakage_measurements(run: SchemeRun, data: RunData, params: dict) -> list[Measurement]:
    """The raw-byte canary scan (measured) and, beside it, the ledger's kinds (declared, never
    merged into a measured figure). The probes of the leakage stage add the rest."""
    s = run.name
    scan = canary_scan(run, data)
    kinds = sorted({x.kind for x in run.ledger.learned_by(PROVIDER)})
    return [
        Measurement(s, "hash_visible_to_provider", float(scan["hash_hits"] > 0 or scan["image_hits"] > 0), "bool",
                    scan["hashes"], params=params, text="canary: a benign hash or image in the provider's raw view"),
        Measurement(s, "canary_benign_images_in_provider_view", float(scan["image_hits"]), "count",
                    scan["images"], params=params),
        Measurement(s, "canary_benign_hashes_in_provider_view", float(scan["hash_hits"]), "count",
                    scan["hashes"], params=params),
        Measurement(s, "provider_ledger_kinds", float(len(kinds)), "count", 1, params=params,
                    text=", ".join(kinds) or "nothing", label="declared"),
        Measurement(s, "verdict_to", None, "party", 1, params=params, text=run.scheme.verdict_to,
                    label="declared"),
    ]


def integrity_measurements(run: SchemeRun, params: dict) -> list[Measurement]:
    sent = [o for o in run.outcomes if o.sent]
    ok = sum(bool(o.delivered_ok) for o in sent)
    return [_rate(run.name, "delivered_bit_exact", ok, len(sent), params)]


def measure(run: SchemeRun, data: RunData, extra: Sequence[MeasureFn]) -> list[Measurement]:
    """Every measurement of one scheme's run: this stage's own, then each of ``extra`` in order
    (``api.MEASUREMENTS`` for a full run; an explicit ``()`` measures this stage's metrics only)."""
    params = run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile}
    if run.sampled:
        params |= {"messages_sampled": run.sampled[0], "messages_total": run.sampled[1]}
    if run.synthetic:  # the list was padded for cost: every row of this run says so
        params |= {"list_size": run.list_size, "synthetic_padding": run.synthetic}
    if run.rule_outcomes is not None:   # effectiveness from the plaintext rule over every message
        from dataclasses import replace as _replace
        agree, n = run.rule_check
        acc = accuracy_measurements(_replace(run, outcomes=run.rule_outcomes),
                                    params | {"effectiveness_from": "plaintext rule over all messages"})
        for m in acc:
            m.text = ((m.text + "; ") if m.text else "") + (
                f"from the plaintext rule over all messages; the protocol ran {n} stratified messages "
                f"and agreed with the rule on {agree}")
        acc.append(_rate(run.name, "verdict_equals_plaintext_rule", agree, n,
                         params | {"sample": "stratified: every near-threshold image, then known/benign"}))
    else:
        acc = accuracy_measurements(run, params)
    if run.sampled and run.rule_outcomes is None:  # the sample is half known: its precision is not the workload's
        for m in acc:
            if m.metric == "precision" and m.params.get("slice") == "workload base rate":
                m.text = (f"at the sample's base rate {m.params.get('base_rate')} (half known by design), "
                          "not the workload's: not comparable with unsampled schemes")
    out = (acc + cost_measurements(run, params)
           + leakage_measurements(run, data, params) + integrity_measurements(run, params))
    for fn in extra:
        out.extend(fn(run, data))
    if run.scheme.modelled:  # the scheme's trust assumption is not something this machine can measure
        for m in out:        # declared metadata (verdict_to, ...) stays declared: it is no model output
            if m.label == "measured":
                m.label = "modelled"
    return out
