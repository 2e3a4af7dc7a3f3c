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


def accuracy_measurements(run: SchemeRun, params: dict) -> list[Measurement]:
    s = run.name
    im = [o for o in run.outcomes if o.has_image]
    pos = [o for o in im if o.known]
    neg = [o for o in im if not o.known]
    tp = sum(o.detected for o in pos)
    fp = sum(o.detected for o in neg)
    out = [_rate(s, "recall", tp, len(pos), params | {"slice": "all"}),
           _rate(s, "fpr", fp, len(neg), params)]
    if tp + fp:
        out.append(_rate(s, "precision", tp, tp + fp, params | {"base_rate": round(len(pos) / max(1, len(im)), 4)}))
    else:
        out.append(Measurement(s, "precision", None, "rate", 0, params=params,
                               text="no detections: precision undefined"))
    fams: dict[str, list] = {}
    for o in pos:
        fams.setdefault(transform_family(o.transform), []).append(o)
    for fam, os_ in sorted(fams.items()):
        out.append(_rate(s, "recall", sum(o.detected for o in os_), len(os_), params | {"slice": fam}))
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


def canary_scan(run: SchemeRun, data: RunData) -> dict[str, int]:
    """Look for benign image bytes and benign hashes (raw and hex) in the provider's raw view, over
    the benign image messages this scheme ran (n counts only those). One pass of an Aho-Corasick
    automaton (pyahocorasick) over the view: time linear in the view plus the needles."""
    import ahocorasick

    ran = _run_ids(run)
    benign_msgs = [m for m in data.workload.image_messages if not m.known and m.id in ran]
    auto = ahocorasick.Automaton()
    needles: dict[str, set] = {}
    hashes = set()
    for m in benign_msgs:
        png = data.png[m.id]
        needle = png[len(png) // 2: len(png) // 2 + 48]
        if needle:
            needles.setdefault(needle.decode("latin-1"), set()).add(("image", m.id))
        h = data.image_hash(m.id).tobytes()
        hashes.add(h)
        for form in (h, h.hex().encode()):
            needles.setdefault(form.decode("latin-1"), set()).add(("hash", h))
    for key, tags in needles.items():
        auto.add_word(key, tags)
    found_img, found_hash = set(), set()
    if needles:
        auto.make_automaton()
        for chunk in provider_raw_view(run):
            for _, tags in auto.iter(chunk.decode("latin-1")):
                for kind, ref in tags:
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
    acc = accuracy_measurements(run, params)
    if run.sampled:  # the sample is half known: its precision is not the workload's
        for m in acc:
            if m.metric == "precision" and m.value is not None:
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
