"""Leakage probes for every scheme: list exposure, membership oracle, linkability, inversion.

Each probe reads what a party actually received or learned in the run (the ledger and the
channel), never the scheme's description:

- ``db_exposure_bits``: what the device bundle reveals of the list. A scheme declares it with
  a ``device_db_exposure(db) -> (bits, text)`` method (information-theoretic, labelled
  modelled); without one, a bundle holding every list hash verbatim counts as the plain list
  (n x bits); otherwise the metric is recorded as undeclared (None) with the verbatim count.
- ``membership_oracle``: offline tests per second a device can run against the list: the
  device learned a verdict for an image while receiving no bytes for that message. An online
  oracle (a provider round trip per test) or none at all scores 0, with text saying which.
- ``linkability``: over the benign images the workload sends more than once, the rate at which
  the provider links two sends of the same image from the hashes in its view (Hamming distance
  <= the scheme's threshold), next to the rate for pairs of different images (the baseline).
- ``inversion_ssim`` / ``inversion_psnr``: the ridge inversion of ``evaluation/leakage/inversion.py`` on
  the hashes or intermediates the provider holds, scored on the benign images actually sent,
  against the mean-image baseline (``inversion_*_baseline``).
Schemes whose provider view holds no hash or intermediate get None with that text: nothing is
invented.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np

from e2eebench.clientside.hashing import hamming_matrix
from e2eebench.protocols.channel import DEVICE, PROVIDER
from e2eebench.protocols.errors import ProtocolError
from e2eebench.evaluation.leakage import inversion as inv
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import mean_ci, wilson
from e2eebench.evaluation.run.store import Measurement

NO_HASH = "no hash in provider view"


def _params(run: SchemeRun, data: RunData) -> dict:
    return run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile}


def _as_hash(value, nbytes: int) -> np.ndarray | None:
    """A learned hash in any of the forms schemes record (raw bytes, hex, uint8 array)."""
    if isinstance(value, (bytes, bytearray)) and len(value) == nbytes:
        return np.frombuffer(bytes(value), np.uint8).copy()
    if isinstance(value, str) and len(value) == 2 * nbytes:
        try:
            return np.frombuffer(bytes.fromhex(value), np.uint8).copy()
        except ValueError:
            return None
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.size == nbytes:
        return value.reshape(-1).copy()
    return None


def _as_features(value, bits: int) -> np.ndarray | None:
    """A learned intermediate: raw little-endian float16/32/64 bytes or a float array."""
    if isinstance(value, (bytes, bytearray)):
        for dt in ("<f2", "<f4", "<f8"):
            if len(value) == bits * np.dtype(dt).itemsize:
                f = np.frombuffer(bytes(value), dt).astype(np.float64)
                return f if np.isfinite(f).all() else None
        return None
    if isinstance(value, np.ndarray) and value.size == bits and value.dtype.kind == "f":
        return value.astype(np.float64).reshape(-1)
    return None


def provider_view(run: SchemeRun, data: RunData) -> dict[str, dict[str, object]]:
    """Benign message id -> {"hash": packed, "intermediate": floats, "image": bytes} as learned."""
    benign = {m.id for m in data.workload.image_messages if not m.known}
    nb, bits = data.hasher.nbytes, data.hasher.bits
    out: dict[str, dict[str, object]] = defaultdict(dict)
    for x in run.ledger.learned_by(PROVIDER):
        if x.message_id not in benign:
            continue
        if x.kind == "hash":
            h = _as_hash(x.value, nb)
            if h is not None:
                out[x.message_id]["hash"] = h
        elif x.kind == "intermediate":
            f = _as_features(x.value, bits)
            if f is not None:
                out[x.message_id]["intermediate"] = f
        elif x.kind == "image" and isinstance(x.value, (bytes, bytearray)):
            out[x.message_id]["image"] = bytes(x.value)
    return dict(out)


# -- db_exposure_bits ------------------------------------------------------------------------
def count_verbatim(hashes: np.ndarray, blob: bytes) -> int:
    """How many of ``hashes`` occur in ``blob`` verbatim, raw or as lower-case hex.

    Vectorised (a 10^5-entry list against a multi-megabyte bundle in about a second): every
    8-byte window of the blob is one uint64; a hash whose first 8 bytes (raw or hex) equal a
    window is compared in full at that window's position, and only the rare prefix collision
    that fails there is searched for with ``in``."""
    hashes = np.ascontiguousarray(hashes, np.uint8)
    if len(hashes) == 0 or len(blob) < 8:
        return sum(1 for h in hashes if h.tobytes() in blob or h.tobytes().hex().encode() in blob)
    buf = np.frombuffer(blob, np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(buf, 8).copy().view(np.uint64).ravel()
    order = np.argsort(windows)
    ordered = windows[order]
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    hexed = np.empty((len(hashes), 2 * hashes.shape[1]), np.uint8)
    hexed[:, 0::2], hexed[:, 1::2] = digits[hashes >> 4], digits[hashes & 15]

    def found(forms: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(forms[:, :8]).view(np.uint64).ravel()
        i = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
        pos = order[i]
        ok = (ordered[i] == keys) & (pos + forms.shape[1] <= len(buf))
        rows = np.flatnonzero(ok)
        full = np.zeros(len(forms), bool)
        if len(rows):  # compare in blocks, so a long list never builds one huge index array
            for b in range(0, len(rows), 1 << 14):
                r = rows[b:b + (1 << 14)]
                full[r] = (buf[pos[r, None] + np.arange(forms.shape[1])] == forms[r]).all(axis=1)
        return full | (ok & ~full & np.array([f.tobytes() in blob if o and not g else False
                                              for f, o, g in zip(forms, ok, full)], bool))
    return int((found(hashes) | found(hexed)).sum())


def db_exposure(run: SchemeRun, data: RunData) -> list[Measurement]:
    p = _params(run, data) | {"list_size": len(data.db)}
    fn = getattr(run.scheme, "device_db_exposure", None)
    if fn is not None:
        bits, text = fn(data.db)
        label = "modelled" if bits else "declared"  # a declared zero is the scheme's claim, not a measurement
        return [Measurement(run.name, "db_exposure_bits", float(bits), "bits", len(data.db), params=p,
                            text=text, label=label)]
    if run.bundle_bytes == 0:
        return [Measurement(run.name, "db_exposure_bits", 0.0, "bits", len(data.db), params=p,
                            text="no device bundle")]
    bundle = next((d for t, d in run.ledger.received.get(DEVICE, []) if t.label == "bundle"), b"")
    hs = data.db.hashes_for(data.hasher.name)
    verbatim = count_verbatim(hs, bundle)
    if len(hs) and verbatim == len(hs):
        return [Measurement(run.name, "db_exposure_bits", float(len(hs) * data.hasher.bits), "bits",
                            len(hs), params=p, text="every list hash appears verbatim in the device bundle")]
    return [Measurement(run.name, "db_exposure_bits", None, "bits", 0, params=p,
                        text=f"not declared by the scheme; {verbatim}/{len(hs)} list hashes verbatim in "
                             f"its {run.bundle_bytes}-byte bundle")]


# -- membership_oracle -----------------------------------------------------------------------
def membership_oracle(run: SchemeRun, data: RunData) -> list[Measurement]:
    p = _params(run, data)
    image_ids = {o.message_id for o in run.outcomes if o.has_image}
    told = {x.message_id for x in run.ledger.learned_by(DEVICE, "verdict") if x.message_id in image_ids}
    if not told:
        return [Measurement(run.name, "membership_oracle", 0.0, "tests/s", len(image_ids), params=p,
                            text="device learns no verdict")]
    got_bytes = {t.message_id for t in run.channel.transfers if t.receiver == DEVICE and t.message_id in told}
    offline = told - got_bytes
    if not offline:
        return [Measurement(run.name, "membership_oracle", 0.0, "tests/s", len(told), params=p,
                            text="online only: the device's verdict needs a provider round trip per test")]
    ms = [o.device_s for o in run.outcomes if o.message_id in offline and o.device_s > 0]
    rate = len(ms) / sum(ms) if ms else None
    # the interval is the mean CPU time's t-interval, inverted (1 / mean is monotone); n = the
    # timings the rate is computed from
    e = mean_ci(ms)
    lo = 1.0 / e.ci_high if e.ci_high is not None and e.ci_high > 0 else None
    hi = 1.0 / e.ci_low if e.ci_low is not None and e.ci_low > 0 else None
    return [Measurement(run.name, "membership_oracle", rate, "tests/s", len(ms), lo, hi, params=p,
                        text=f"offline: the device tests any image against its bundle with no provider "
                             f"contact ({len(offline)}/{len(told)} verdicts; rate = 1 / mean device CPU per image)")]


# -- linkability -----------------------------------------------------------------------------
def _same_and_diff_pairs(ids: list[str], items: list[str]) -> tuple[list[tuple[int, int]], int]:
    same = [(i, j) for i, j in combinations(range(len(ids)), 2) if items[i] == items[j]]
    return same, len(ids) * (len(ids) - 1) // 2 - len(same)


def _payloads(run: SchemeRun, mids: set[str]) -> dict[str, bytes]:
    from e2eebench.protocols.messaging import parse_envelope
    out = {}
    for t, data in run.ledger.received.get(PROVIDER, []):
        if t.message_id in mids and t.label == "envelope" and data:
            try:
                out[t.message_id] = parse_envelope(data).payload
            except ProtocolError:
                continue
    return out


def linkability(run: SchemeRun, data: RunData) -> list[Measurement]:
    p = _params(run, data) | {"threshold": run.scheme.threshold}
    msgs = [m for m in data.workload.image_messages if not m.known]
    view = provider_view(run, data)
    hashes = {}
    for mid, v in view.items():
        if "hash" in v:
            hashes[mid] = v["hash"]
        elif "intermediate" in v:
            f = v["intermediate"]
            hashes[mid] = np.packbits((f > np.median(f)).astype(np.uint8))
        elif "image" in v:
            hashes[mid] = data.image_hash(mid)
    seen = [m for m in msgs if m.id in hashes]
    if not seen:
        sent_ids = {o.message_id for o in run.outcomes if o.sent}
        sent = [m for m in msgs if m.id in sent_ids]
        ids, items = [m.id for m in sent], [m.item_id for m in sent]
        same, _ = _same_and_diff_pairs(ids, items)
        pl = _payloads(run, set(ids))
        k = sum(1 for i, j in same if pl.get(ids[i]) and pl.get(ids[i]) == pl.get(ids[j]))
        return [Measurement(run.name, "linkability", None, "rate", len(same), params=p,
                            text=f"{NO_HASH}; identical non-empty payloads on {k}/{len(same)} same-image pairs")]
    ids, items = [m.id for m in seen], [m.item_id for m in seen]
    d = hamming_matrix(np.stack([hashes[i] for i in ids]), np.stack([hashes[i] for i in ids]))
    linked = d <= run.scheme.threshold
    iu = np.triu_indices(len(ids), 1)
    same_mask = np.array([items[i] == items[j] for i, j in zip(*iu)], bool)
    lk = linked[iu]
    k_s, n_s = int(lk[same_mask].sum()), int(same_mask.sum())
    k_d, n_d = int(lk[~same_mask].sum()), int((~same_mask).sum())
    e, b = wilson(k_s, n_s), wilson(k_d, n_d)
    out = [Measurement(run.name, "linkability", e.value if n_s else None, "rate", n_s, e.ci_low, e.ci_high, p,
                       text=f"same-image pairs linked {k_s}/{n_s}; different-image pairs linked {k_d}/{n_d} "
                            f"(baseline); rule: hash distance <= {run.scheme.threshold}")]
    out.append(Measurement(run.name, "linkability_baseline", b.value if n_d else None, "rate", n_d,
                           b.ci_low, b.ci_high, p, text="different-image pairs the same rule links"))
    return out


# -- inversion -------------------------------------------------------------------------------
def _decode_png(b: bytes):
    import io

    from PIL import Image
    with Image.open(io.BytesIO(b)) as im:
        im.load()
        return im.convert("RGB")


def inversion(run: SchemeRun, data: RunData) -> list[Measurement]:
    p = _params(run, data)
    view = provider_view(run, data)
    kinds = {k for v in view.values() for k in v}
    if not kinds:
        return [Measurement(run.name, m, None, u, 0, params=p, text=NO_HASH)
                for m, u in (("inversion_ssim", "ssim"), ("inversion_psnr", "dB"))]
    kind = "image" if "image" in kinds else ("intermediate" if "intermediate" in kinds else "hash")
    mids = [mid for mid, v in view.items() if kind in v]
    targets = np.stack([inv.thumbnail(data.images[m]) for m in mids])
    if kind == "image":
        recon = np.stack([inv.thumbnail(_decode_png(view[m]["image"])) for m in mids])
        sv = [inv.ssim(r, t) for r, t in zip(recon, targets)]
        pv = [min(inv.psnr(r, t), 99.0) for r, t in zip(recon, targets)]
        pk = p | {"view": "image"}
        text = "provider sees the image itself (SSIM of its own thumbnail; PSNR capped at 99 dB)"
        es, ep = mean_ci(sv), mean_ci(pv)
        return [Measurement(run.name, "inversion_ssim", es.value, "ssim", es.n, es.ci_low, es.ci_high, pk, text=text),
                Measurement(run.name, "inversion_psnr", ep.value, "dB", ep.n, ep.ci_low, ep.ci_high, pk, text=text)]
    else:
        ts = inv.training_set(data.hasher.name)
        run_ids = {it.id for it in data.known + data.benign}
        train_ids = frozenset(i for i in ts.ids if i in run_ids)
        model = inv.cached_model(kind, data.hasher.name, train_ids)
        if kind == "hash":
            recon = model.reconstruct(hashes=np.stack([view[m]["hash"] for m in mids]))
        else:
            recon = model.reconstruct(features=np.stack([view[m]["intermediate"] for m in mids]))
        text = (f"ridge from the {kind} to 32x32 gray, trained on {model.n_train} disjoint images "
                f"(alpha {model.alpha:g})")
    s = inv.score(recon, targets, model.mean_thumb)
    pk = p | {"view": kind, "excluded_training_items": len(train_ids)}
    tb = f"{text}; mean-image baseline SSIM {s.baseline_ssim[0]:.3f}, PSNR {s.baseline_psnr[0]:.2f} dB; " \
         f"beats baseline on {s.wins}/{s.n}"
    return [
        Measurement(run.name, "inversion_ssim", s.ssim[0], "ssim", s.n, s.ssim[1], s.ssim[2], pk, text=tb),
        Measurement(run.name, "inversion_psnr", s.psnr[0], "dB", s.n, s.psnr[1], s.psnr[2], pk, text=tb),
        Measurement(run.name, "inversion_ssim_baseline", s.baseline_ssim[0], "ssim", s.n, s.baseline_ssim[1],
                    s.baseline_ssim[2], pk, text="mean training thumbnail (no information)"),
        Measurement(run.name, "inversion_psnr_baseline", s.baseline_psnr[0], "dB", s.n, s.baseline_psnr[1],
                    s.baseline_psnr[2], pk, text="mean training thumbnail (no information)"),
    ]


def leakage_probes(run: SchemeRun, data: RunData) -> list[Measurement]:
    return db_exposure(run, data) + membership_oracle(run, data) + linkability(run, data) + inversion(run, data)
