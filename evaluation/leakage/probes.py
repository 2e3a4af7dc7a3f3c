"""Leakage probes for every scheme: list exposure, membership oracle, linkability, inversion.

Each probe reads what a party actually received in the run (its raw view: bytes received and
plaintexts opened with its own keys), never the scheme's description nor its ledger:

- ``db_exposure_bits``: what the device bundle reveals of the list. A scheme declares it with
  a ``device_db_exposure(db) -> (bits, text)`` method (information-theoretic, labelled
  modelled); without one, a bundle holding every list hash verbatim counts as the plain list
  (n x bits); otherwise the metric is recorded as undeclared (None) with the verbatim count.
- ``membership_oracle``: offline tests per second a device owner can run against the list: a
  replay of the device role on the bundle from its raw view, randomness pinned and no provider,
  must tell listed from unlisted test images (interval above 0). An online oracle (another
  party per test) or none at all scores 0, with text saying which.
- the attacks on every party's raw view (linkability, verdict inference, hash and chunk bits,
  declarations): :mod:`adversary`.
- ``provider_learns_per_benign_bits``: an estimate from those probes, per distinct benign image:
  8 x the image's encoded bytes when the image itself is in the provider's view, else the hash
  bits it recovers (BSC-capacity estimator) plus the chunk bits it learns (chunked PSI).
- ``inversion_ssim`` / ``inversion_psnr``: the stronger of two inversions of ``evaluation/leakage/inversion.py``
  (ridge and an MLP; each also as ``inversion_*_ridge`` / ``inversion_*_mlp``) on the hashes or
  intermediates the provider's raw view yields, trained on other source photos only, scored on the
  benign images actually sent, against the mean-image baseline (``inversion_*_baseline``).
Schemes whose provider view holds no hash or intermediate get None with that text: nothing is
invented.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from e2eebench.protocols.channel import DEVICE, PROVIDER
from e2eebench.protocols.errors import ProtocolError
from e2eebench.evaluation.leakage import inversion as inv
from e2eebench.evaluation.leakage.adversary import adversary_probes, recover
from e2eebench.evaluation.leakage.views import party_views
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import mean_ci
from e2eebench.evaluation.run.store import Measurement

NO_HASH = "no hash in provider view"


def _params(run: SchemeRun, data: RunData) -> dict:
    return run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile}


def provider_view(run: SchemeRun, data: RunData) -> dict[str, dict[str, object]]:
    """Benign message id -> {"hash": packed, "intermediate": floats, "image": bytes} as found in the
    provider's raw view (the image's encoding, a real-valued intermediate, or the hash verbatim)."""
    views = party_views(run, data).get(PROVIDER, {})
    bits = data.hasher.bits
    out: dict[str, dict[str, object]] = defaultdict(dict)
    for m in data.workload.image_messages:
        v = views.get(m.id)
        if m.known or v is None:
            continue
        chunks = v.chunks()
        png, h = data.png[m.id], data.image_hash(m.id)
        if any(png in c for c in chunks):
            out[m.id]["image"] = png
            continue
        got, rec, f = recover(v, h)
        if f is not None:
            out[m.id]["intermediate"] = f
        elif rec is not None and got >= bits:
            out[m.id]["hash"] = h
        if not out[m.id]:
            del out[m.id]
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
ORACLE_TESTS = 8   # listed and unlisted test images each


def oracle_replay(run: SchemeRun, data: RunData, tests: int = ORACLE_TESTS) -> tuple[str, int, int, int, int]:
    """The device owner's offline test, from its raw view only: the bundle bytes it received and
    the public device code, run with its own randomness pinned and no provider to talk to.

    With the randomness fixed, an output that depends on the image only through the verdict
    (a fixed-size cover for every non-match, a refusal, a notice) equals the output for a known
    unlisted reference image exactly when the test image is unlisted: that is the oracle. An
    output that differs for every image (a blinded voucher, fresh shares) tells nothing; a device
    role that contacts another party is not offline. Returns (kind, tp, n_listed, fp, n_unlisted)
    with kind "offline", "online" (needs a party per test) or "none" (no bundle)."""
    from e2eebench.protocols.channel import Channel, Ledger, MessageContext, PartyClock
    bundle = next((d for t, d in run.ledger.received.get(DEVICE, []) if t.label == "bundle"), None)
    if not bundle:
        return "none", 0, 0, 0, 0
    scheme = run.scheme
    match = lambda im: bool(scheme.plaintext_match(data.db, data.hasher.hash(im)))  # noqa: E731
    listed = [it.image for it in data.known[: 3 * tests] if match(it.image)][:tests]
    unlisted = [it.image for it in data.benign[: 3 * tests + 1] if not match(it.image)][: tests + 1]
    if not listed or len(unlisted) < 2:
        return "none", 0, 0, 0, 0
    ch = Channel(Ledger())  # no endpoints: nobody answers

    def ctx() -> MessageContext:
        return MessageContext("oracle", "oracle-device", ch, PartyClock(), np.random.default_rng(0x0AC1E))
    def output(im):
        before = len(ch.transfers)
        try:  # a fresh load per test: the same device state each time (some states do not copy)
            p = scheme.device_prepare(scheme.device_load(bundle, "oracle-device", ctx()), im, ctx())
        except ProtocolError:
            return None
        if len(ch.transfers) != before:
            return None
        return (p.payload, p.send, p.notice)

    ref = output(unlisted[0])
    if ref is None:
        return "online", 0, len(listed), 0, len(unlisted) - 1
    tp = sum(output(im) != ref for im in listed)
    fp = sum(output(im) != ref for im in unlisted[1:])
    return "offline", tp, len(listed), fp, len(unlisted) - 1


def membership_oracle(run: SchemeRun, data: RunData) -> list[Measurement]:
    """Offline tests per second a device owner can run against the list: the replay attack of
    :func:`oracle_replay` must tell listed from unlisted images (its Newcombe interval above 0);
    the rate is 1 / mean device CPU per image message of the run that received no bytes."""
    from e2eebench.evaluation.leakage.adversary import newcombe
    from e2eebench.evaluation.run.stats import wilson
    p = _params(run, data)
    kind, tp, npos, fp, nneg = oracle_replay(run, data)
    a, b = wilson(tp, npos), wilson(fp, nneg)
    lo_adv, _ = newcombe(a, b) if npos and nneg else (None, None)
    attack = f"replay on the bundle with pinned randomness: listed told {tp}/{npos}, unlisted {fp}/{nneg}"
    if kind == "none":
        return [Measurement(run.name, "membership_oracle", 0.0, "tests/s", 0, params=p,
                            text="no device bundle to replay: no offline test")]
    if kind == "online":
        return [Measurement(run.name, "membership_oracle", 0.0, "tests/s", npos + nneg, params=p,
                            text="online only: the device role contacts another party for every test")]
    if lo_adv is None or lo_adv <= 0:
        return [Measurement(run.name, "membership_oracle", 0.0, "tests/s", npos + nneg, params=p,
                            text=f"no offline oracle: the device's outputs do not reveal the verdict ({attack})")]
    image_ids = {o.message_id for o in run.outcomes if o.has_image}
    got_bytes = {t.message_id for t in run.channel.transfers if t.receiver == DEVICE and t.message_id in image_ids}
    offline = image_ids - got_bytes
    ms = [o.device_s for o in run.outcomes if o.message_id in offline and o.device_s > 0]
    rate = len(ms) / sum(ms) if ms else None
    # the interval is the mean CPU time's t-interval, inverted (1 / mean is monotone); n = the
    # timings the rate is computed from
    e = mean_ci(ms)
    lo = 1.0 / e.ci_high if e.ci_high is not None and e.ci_high > 0 else None
    hi = 1.0 / e.ci_low if e.ci_low is not None and e.ci_low > 0 else None
    return [Measurement(run.name, "membership_oracle", rate, "tests/s", len(ms), lo, hi,
                        params=p | {"oracle_tp": tp, "oracle_listed": npos, "oracle_fp": fp, "oracle_unlisted": nneg},
                        text=f"offline: {attack}; rate = 1 / mean device CPU per image message that received no "
                             f"bytes ({len(ms)} timings)")]


# -- provider_learns_per_benign_bits --------------------------------------------------------
def provider_bits(run: SchemeRun, data: RunData, probes: list[Measurement]) -> list[Measurement]:
    p = _params(run, data) | {"party": PROVIDER}
    view = provider_view(run, data)
    pv = party_views(run, data).get(PROVIDER, {})
    firsts: dict[str, str] = {}
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    for m in data.workload.image_messages:
        if not m.known and m.id in ran:
            firsts.setdefault(m.item_id, m.id)
    chunk = next((m for m in probes if m.metric == "chunk_bits_revealed" and m.label == "measured"), None)
    vals = []
    for mid in firsts.values():
        if "image" in view.get(mid, {}):
            vals.append(8.0 * len(data.png[mid]))
        else:
            from e2eebench.evaluation.leakage.adversary import recover_hash
            from e2eebench.evaluation.leakage.views import MessageView
            vals.append(recover_hash(pv.get(mid, MessageView()), data.image_hash(mid), data.png[mid])[0])
    e = mean_ci(vals)
    extra = chunk.value if chunk is not None and chunk.value else 0.0
    return [Measurement(run.name, "provider_learns_per_benign_bits", e.value + extra if e.n else None, "bits", e.n,
                        None if e.ci_low is None else e.ci_low + extra, None if e.ci_high is None else e.ci_high + extra,
                        p, text="estimate from the probes, per distinct benign image: 8 x encoded image bytes when "
                                "the image is in the provider's raw view, else hash bits recovered (bits x "
                                "(1 - H2(BER))), plus chunk bits revealed (chunked PSI)")]


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
    ts = inv.training_set(data.hasher.name)
    # split by source photo: no tile or transform of an evaluated photo trains the attacker
    run_keys = {it.id for it in data.known + data.benign} | {it.group for it in data.known + data.benign}
    exclude = frozenset(k for k in set(ts.ids) | set(ts.groups) if k in run_keys)
    excluded = sum(i in exclude or g in exclude for i, g in zip(ts.ids, ts.groups))
    scored = []
    for attacker in inv.ATTACKERS:
        model = inv.cached_model(kind, data.hasher.name, exclude, attacker)
        if kind == "hash":
            recon = model.reconstruct(hashes=np.stack([view[m]["hash"] for m in mids]))
        else:
            recon = model.reconstruct(features=np.stack([view[m]["intermediate"] for m in mids]))
        scored.append((attacker, model, inv.score(recon, targets, model.mean_thumb)))
    out = []
    for attacker, model, s in scored:
        pk = p | {"view": kind, "attacker": attacker, "excluded_training_items": excluded}
        tb = (f"{model.describe} from the {kind} to 32x32 gray, trained on {model.n_train} images of other "
              f"source photos; mean-image baseline SSIM {s.baseline_ssim[0]:.3f}, PSNR {s.baseline_psnr[0]:.2f} dB; "
              f"beats baseline on {s.wins}/{s.n}")
        out += [Measurement(run.name, f"inversion_ssim_{attacker}", s.ssim[0], "ssim", s.n, s.ssim[1], s.ssim[2], pk,
                            text=tb),
                Measurement(run.name, f"inversion_psnr_{attacker}", s.psnr[0], "dB", s.n, s.psnr[1], s.psnr[2], pk,
                            text=tb)]
    # the headline is the stronger attacker's (by mean SSIM over the same targets): the lower bound
    # on what leaks is not set by the weaker model
    attacker, model, s = max(scored, key=lambda r: r[2].ssim[0])
    pk = p | {"view": kind, "attacker": attacker, "excluded_training_items": excluded}
    tb = (f"stronger of {', '.join(a for a, _, _ in scored)}: {model.describe}; SSIM "
          + ", ".join(f"{a} {x.ssim[0]:.3f}" for a, _, x in scored)
          + f"; mean-image baseline SSIM {s.baseline_ssim[0]:.3f}; beats baseline on {s.wins}/{s.n}")
    return out + [
        Measurement(run.name, "inversion_ssim", s.ssim[0], "ssim", s.n, s.ssim[1], s.ssim[2], pk, text=tb),
        Measurement(run.name, "inversion_psnr", s.psnr[0], "dB", s.n, s.psnr[1], s.psnr[2], pk, text=tb),
        Measurement(run.name, "inversion_ssim_baseline", s.baseline_ssim[0], "ssim", s.n, s.baseline_ssim[1],
                    s.baseline_ssim[2], pk, text="mean training thumbnail (no information)"),
        Measurement(run.name, "inversion_psnr_baseline", s.baseline_psnr[0], "dB", s.n, s.baseline_psnr[1],
                    s.baseline_psnr[2], pk, text="mean training thumbnail (no information)"),
    ]


def leakage_probes(run: SchemeRun, data: RunData) -> list[Measurement]:
    adv = adversary_probes(run, data)
    return (db_exposure(run, data) + membership_oracle(run, data) + adv + provider_bits(run, data, adv)
            + inversion(run, data))
