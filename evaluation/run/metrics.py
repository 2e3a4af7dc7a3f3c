"""From outcomes and party views to measurements (accuracy, leakage, cost).

Metric names are fixed by the design; each measurement carries its unit, sample size and
interval. The measurement stages (leakage probes, pair accuracy, security profile, EU scale)
add theirs as ``MeasureFn`` functions handed to :func:`measure` (the API composes them), so this
stage never imports a stage above it.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np

from e2eebench.protocols.channel import PROVIDER
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


def cost_measurements(run: SchemeRun, params: dict) -> list[Measurement]:
    s = run.name
    im = [o for o in run.outcomes if o.has_image]
    p = params | {"list_size": run.list_size}
    return [
        _mean(s, "client_ms", (o.device_s for o in im), "ms", p, 1e3),
        _mean(s, "server_ms", (o.server_s for o in im), "ms", p, 1e3),
        _mean(s, "bytes_up", (o.bytes_up for o in im), "bytes", p),
        _mean(s, "bytes_down", (o.bytes_down for o in im), "bytes", p),
        _mean(s, "rounds", (o.rounds for o in im), "flights", p),
        _mean(s, "detection_bytes_up", (o.detection_bytes_up for o in im), "bytes", p),
        _mean(s, "detection_bytes_down", (o.detection_bytes_down for o in im), "bytes", p),
        Measurement(s, "device_storage_bytes", float(run.bundle_bytes + run.device_extra_bytes), "bytes", 1,
                    params=p | {"bundle_bytes": run.bundle_bytes, "own_key_bytes": run.device_extra_bytes}),
        Measurement(s, "setup_s", run.setup_s, "s", 1, params=p),
    ]


def _as_bytes(v) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return json.dumps(v, default=str, sort_keys=True).encode()


def _run_ids(run: SchemeRun) -> set[str]:
    """Ids of the image messages this scheme actually ran (a sampled run runs only some)."""
    return {o.message_id for o in run.outcomes if o.has_image}


def canary_scan(run: SchemeRun, data: RunData) -> dict[str, int]:
    """Look for benign image bytes and benign hashes (raw and hex) in the provider's whole view,
    over the benign image messages this scheme ran (n counts only those)."""
    view = b"".join(run.ledger.received_bytes(PROVIDER))
    learned = b"".join(_as_bytes(x.value) for x in run.ledger.learned_by(PROVIDER))
    hay = view + b"\x00" + learned
    ran = _run_ids(run)
    benign_msgs = [m for m in data.workload.image_messages if not m.known and m.id in ran]
    img_hits = hash_hits = 0
    checked = set()
    for m in benign_msgs:
        png = data.png[m.id]
        needle = png[len(png) // 2: len(png) // 2 + 48]
        if needle and needle in hay:
            img_hits += 1
        h = data.image_hash(m.id).tobytes()
        if h in checked:
            continue
        checked.add(h)
        if h in hay or h.hex().encode() in hay:
            hash_hits += 1
    return {"images": len(benign_msgs), "image_hits": img_hits, "hashes": len(checked), "hash_hits": hash_hits}


def leakage_measurements(run: SchemeRun, data: RunData, params: dict) -> list[Measurement]:
    s = run.name
    scan = canary_scan(run, data)
    learned = run.ledger.learned_by(PROVIDER)
    declared_hash = any(x.kind in ("hash", "image") for x in learned)
    visible = declared_hash or scan["hash_hits"] > 0
    ran = _run_ids(run)
    benign_ids = {m.id for m in data.workload.image_messages if not m.known and m.id in ran}
    bits = {mid: 0.0 for mid in benign_ids}
    verdict_seen: set[str] = set()
    for x in learned:
        if x.message_id in bits:
            if x.kind in ("image", "hash", "intermediate"):
                bits[x.message_id] += 8 * len(_as_bytes(x.value))
            elif x.kind == "verdict" and x.message_id not in verdict_seen:
                verdict_seen.add(x.message_id)  # the match bit counts once, however often recorded
                bits[x.message_id] += 1
    return [
        Measurement(s, "hash_visible_to_provider", float(visible), "bool", scan["hashes"], params=params,
                    text=("declared" if declared_hash else "") + (" canary" if scan["hash_hits"] else "")),
        Measurement(s, "canary_benign_images_in_provider_view", float(scan["image_hits"]), "count",
                    scan["images"], params=params),
        Measurement(s, "canary_benign_hashes_in_provider_view", float(scan["hash_hits"]), "count",
                    scan["hashes"], params=params),
        _mean(s, "provider_learns_per_benign_bits", bits.values(), "bits", params),
        Measurement(s, "verdict_to", None, "party", 1, params=params, text=run.scheme.verdict_to,
                    label="declared"),
    ]


def integrity_measurements(run: SchemeRun, params: dict) -> list[Measurement]:
    sent = [o for o in run.outcomes if o.sent]
    ok = sum(bool(o.delivered_ok) for o in sent)
    return [_rate(run.name, "delivered_bit_exact", ok, len(sent), params)]


def measure(run: SchemeRun, data: RunData, extra: Sequence[MeasureFn] = ()) -> list[Measurement]:
    """Every measurement of one scheme's run: this stage's own, then each of ``extra`` in order."""
    params = run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile}
    if run.sampled:
        params |= {"messages_sampled": run.sampled[0], "messages_total": run.sampled[1]}
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
