"""Chunk-pattern leakage of chunked PSI (``psi-ad-lsh``), from the provider's view and at 10^5.

In the run: per benign image, the chunk vouchers the provider opened (the positions whose
chunk equals a list value there) and whether it opened the image's derivative. Each opened
position i tells the provider that the image's chunk i lies in S_i, the list's set of values
at i: w - log2|S_i| bits (``chunk_bits_revealed``). ``benign_voucher_open_rate`` is the share
of distinct benign images whose derivative the provider decrypted.

At larger lists the same quantities follow from the chunk rule the protocol computes exactly
(element equality in the PSI; the conformance suite checks verdict = plaintext rule): the run's
benign hashes against its list padded with uniformly random synthetic hashes to ``size``
entries. Labelled ``modelled`` (the protocol is not run at that size; the padding is synthetic).
"""
from __future__ import annotations

import math

import numpy as np

from e2eebench.evaluation.leakage.views import MessageView
from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import mean_ci, wilson
from e2eebench.evaluation.run.store import Measurement

SCALES = (100_000,)


def padded_list(hashes: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The list padded with uniformly random synthetic hashes to ``size`` rows (labelled by callers)."""
    extra = max(0, size - len(hashes))
    pad = np.random.default_rng([seed, 0xC4A0, size]).integers(0, 256, (extra, hashes.shape[1]), dtype=np.uint8)
    return np.concatenate([hashes, pad]) if extra else hashes


def chunk_values(hashes: np.ndarray, chunk_bits: int) -> np.ndarray:
    """(n, n_chunks) integer chunk values (big-endian bytes of each chunk)."""
    w = chunk_bits // 8
    b = np.ascontiguousarray(hashes, np.uint8).reshape(len(hashes), -1, w).astype(np.uint64)
    v = np.zeros(b.shape[:2], np.uint64)
    for j in range(w):
        v = (v << np.uint64(8)) | b[:, :, j]
    return v


def chunk_rule(list_hashes: np.ndarray, probe_hashes: np.ndarray, chunk_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per probe hash: which chunk positions equal a list value there (bool (n, m)), and per
    position log2 of the number of distinct list values."""
    lv, pv = chunk_values(list_hashes, chunk_bits), chunk_values(probe_hashes, chunk_bits)
    hit = np.zeros(pv.shape, bool)
    logs = np.zeros(lv.shape[1])
    for i in range(lv.shape[1]):
        u = np.unique(lv[:, i])
        hit[:, i] = np.isin(pv[:, i], u)
        logs[i] = math.log2(len(u))
    return hit, logs


def _p(run: SchemeRun, data: RunData, size: int, **kw) -> dict:
    return run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile,
                                           "party": "provider", "list_size": size} | kw


def chunk_probes(run: SchemeRun, data: RunData, views: dict) -> list[Measurement]:
    if run.name != "psi-ad-lsh":
        return []
    w, k = run.scheme.p["chunk_bits"], run.scheme.p["min_chunks"]
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    firsts: dict[str, str] = {}
    for m in data.workload.image_messages:
        if not m.known and m.id in ran:
            firsts.setdefault(m.item_id, m.id)
    mids = list(firsts.values())
    pv = views.get("provider", {})
    lh = data.db.hashes_for(data.hasher.name)
    _, logs = chunk_rule(lh, lh[:1], w) if len(lh) else (None, np.zeros(run.scheme.n_chunks))
    bits, opened = [], 0
    for mid in mids:
        v = pv.get(mid, MessageView())
        pos = [int(lbl.rsplit(" ", 1)[1]) for lbl, _ in v.opened if lbl.startswith("chunk voucher ")]
        bits.append(sum(w - logs[i] for i in pos))
        opened += any(lbl == "derivative" for lbl, _ in v.opened)
    eb, eo = mean_ci(bits), wilson(opened, len(mids))
    out = [Measurement(run.name, "chunk_bits_revealed", eb.value if eb.n else None, "bits", eb.n, eb.ci_low,
                       eb.ci_high, _p(run, data, len(lh)),
                       text=f"opened chunk vouchers per distinct benign image x (w - log2|S_i|), w = {w}"),
           Measurement(run.name, "benign_voucher_open_rate", eo.value if eo.n else None, "rate", eo.n,
                       eo.ci_low, eo.ci_high, _p(run, data, len(lh)),
                       text=f"distinct benign images whose derivative the provider decrypted "
                            f"({opened}/{len(mids)}; rule: >= {k} chunk matches)")]
    if not mids:
        return out
    benign = np.stack([data.image_hash(m) for m in mids])
    for size in SCALES:
        out += chunk_scale(run.name, benign, lh, w, k, size, data.config.seed,
                           _p(run, data, size, padding="synthetic", method="chunk rule"))
    return out


def chunk_scale(scheme: str, benign: np.ndarray, list_hashes: np.ndarray, chunk_bits: int, min_chunks: int,
                size: int, seed: int, params: dict) -> list[Measurement]:
    """Benign open rate and chunk bits at a padded list of ``size`` entries (modelled)."""
    hit, logs = chunk_rule(padded_list(list_hashes, size, seed), benign, chunk_bits)
    nh = hit.sum(1)
    k = int((nh >= min_chunks).sum())
    e = wilson(k, len(benign))
    eb = mean_ci((hit * (chunk_bits - logs)).sum(1))
    text = (f"real benign hashes vs the list padded to {size} with synthetic random hashes; chunk rule "
            f"(the protocol's exact verdict); {k}/{len(benign)} pass, mean {nh.mean():.2f} chunk matches")
    return [Measurement(scheme, "benign_voucher_open_rate", e.value, "rate", e.n, e.ci_low, e.ci_high, params,
                        text=text, label="modelled"),
            Measurement(scheme, "chunk_bits_revealed", eb.value, "bits", eb.n, eb.ci_low, eb.ci_high, params,
                        text=text, label="modelled")]
