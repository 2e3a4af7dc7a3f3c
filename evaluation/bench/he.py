"""Cost of homomorphic matching against list size: measured points, a fit, extrapolations.

Each list size gets a fresh synthetic list (seeded uniform hashes / unit vectors, labelled
synthetic: cost does not depend on content), fresh keys, and ``n_queries`` queries; half are
planted within the threshold of a list entry, and every verdict is checked against plaintext
matching. Times are CPU seconds (``process_time``) per role; bytes are the serialized objects
that would cross (query, result, verdict) or sit on a party (keys).

Per key placement:
  device       device: encrypt (secret key) + decrypt; provider: evaluate; device uploads
               the public bundle once and stores its keys.
  third-party  device: encrypt (public key); provider: evaluate; third party: decrypt. The
               third party sends the public bundle to the provider once; devices download
               parameters + public key.

The provider's cost is a step function of the number of blocks (ceil(n / slots)); the fit
is least squares ``ms = a + b * blocks`` over the measured points, and 10^6 / 10^7 rows
(labelled "extrapolated") apply it. Result bytes there are computed from the measured bytes
per result ciphertext and the known count of result ciphertexts (also labelled extrapolated).
"""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from e2eebench.protocols.crypto_he import (BfvParams, CkksKeyHolder, CkksMatcher, CkksParams,
                                           CkksQueryEncryptor, HammingKeyHolder, HammingMatcher,
                                           HammingQueryEncryptor, device_bundle_of, unit_normalise)
from e2eebench.protocols.errors import ConfigError

DATA_LABEL = "synthetic uniform list (cost only)"
ENGINES = ("he-hamming", "he-cosine")
EXTRAPOLATE_TO = (10**6, 10**7)
VERDICT_BYTES = 80  # sealed verdict report (device placement) is ~80 B; third party: ~20 B


def _flip(rng: np.random.Generator, h: np.ndarray, k: int) -> np.ndarray:
    bits = np.unpackbits(h)
    bits[rng.choice(bits.size, size=k, replace=False)] ^= 1
    return np.packbits(bits)


def _cpu(fn, *a, **kw) -> tuple[Any, float]:
    t = time.process_time()
    out = fn(*a, **kw)
    return out, 1e3 * (time.process_time() - t)


def _bench_hamming(n: int, n_queries: int, rng: np.random.Generator, threshold: int) -> dict:
    params = BfvParams.for_list_size(n, threshold=threshold)
    y = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    holder, keygen_ms = _cpu(HammingKeyHolder, params)
    bundle = holder.public_bundle()
    dev_bundle = device_bundle_of(bundle)
    matcher, setup_ms = _cpu(HammingMatcher, bundle, y, params, rng)
    pk_enc = HammingQueryEncryptor(dev_bundle, params)
    rows = []
    for qi in range(n_queries):
        x = _flip(rng, y[rng.integers(n)], threshold) if qi % 2 == 0 else rng.integers(0, 256, 32, dtype=np.uint8)
        truth = bool((np.bitwise_count(np.bitwise_xor(y, x)).sum(axis=1) <= threshold).any())
        q_sk, enc_sk = _cpu(holder.encrypt_query, x)
        q_pk, enc_pk = _cpu(pk_enc.encrypt_query, x)
        res, ev = _cpu(matcher.evaluate, q_pk if qi % 2 else q_sk)
        det, dec = _cpu(holder.decrypt_detail, res)
        rows.append((enc_sk, enc_pk, ev, dec, len(q_sk), len(q_pk), len(res), det.match == truth, det.ciphertexts))
    return _summary("he-hamming", n, n_queries, params, matcher, holder, bundle, dev_bundle, rows,
                    keygen_ms, setup_ms, result_ciphertexts=int(rows[0][8]), group_blocks=params.group())


def _summary(engine: str, n: int, n_queries: int, params: Any, matcher: Any, holder: Any, bundle: bytes,
             dev_bundle: bytes, rows: list[tuple], keygen_ms: float, setup_ms: float, *,
             result_ciphertexts: int, group_blocks: int) -> dict:
    """One engine's measurements; each row is (enc_sk, enc_pk, evaluate, decrypt ms, query_sk,
    query_pk, result bytes, verdict correct, ...)."""
    a = np.array([r[:8] for r in rows], dtype=np.float64)
    return {"engine": engine, "list_size": n, "n_queries": n_queries, "slots": params.slots,
            "blocks": matcher.blocks, "result_ciphertexts": result_ciphertexts, "group_blocks": group_blocks,
            "slot_utilisation": matcher.slot_utilisation, "keygen_ms": keygen_ms, "provider_setup_ms": setup_ms,
            "encrypt_sk_ms": float(a[:, 0].mean()), "encrypt_pk_ms": float(a[:, 1].mean()),
            "provider_ms": a[:, 2].tolist(), "decrypt_ms": float(a[:, 3].mean()),
            "query_sk_bytes": int(a[0, 4]), "query_pk_bytes": int(a[0, 5]), "result_bytes": int(a[0, 6]),
            "public_bundle_bytes": len(bundle), "device_bundle_bytes": len(dev_bundle),
            "secret_key_bytes": holder.secret_key_bytes(), "correct": int(a[:, 7].sum())}


def _bench_cosine(n: int, n_queries: int, rng: np.random.Generator, similarity: float) -> dict:
    params = CkksParams(threshold=similarity)
    f = unit_normalise(rng.standard_normal((n, params.dim)))
    holder, keygen_ms = _cpu(CkksKeyHolder, params)
    bundle = holder.public_bundle()
    dev_bundle = device_bundle_of(bundle)
    matcher, setup_ms = _cpu(CkksMatcher, bundle, f, params, rng)
    pk_enc = CkksQueryEncryptor(dev_bundle, params)
    rows, max_err = [], 0.0
    for qi in range(n_queries):
        base = f[rng.integers(n)]
        v = base + 0.2 * rng.standard_normal(params.dim) / math.sqrt(params.dim) if qi % 2 == 0 else rng.standard_normal(params.dim)
        sims = f @ unit_normalise(v)
        truth = bool((sims > params.threshold).any())
        q_sk, enc_sk = _cpu(holder.encrypt_query, v)
        q_pk, enc_pk = _cpu(pk_enc.encrypt_query, v)
        res, ev = _cpu(matcher.evaluate, q_pk if qi % 2 else q_sk)
        vals, dec = _cpu(holder.decrypt_values, res)
        raw = holder.decrypt_values(matcher.evaluate(q_sk, mask=False))
        order = matcher.slot_order()
        max_err = max(max_err, float(np.abs(raw[order >= 0] - sims[order[order >= 0]]).max()))
        rows.append((enc_sk, enc_pk, ev, dec, len(q_sk), len(q_pk), len(res), bool((vals > 0).any()) == truth))
    return _summary("he-cosine", n, n_queries, params, matcher, holder, bundle, dev_bundle, rows,
                    keygen_ms, setup_ms, result_ciphertexts=matcher.blocks, group_blocks=1) | {"max_abs_error": max_err}


def _roles(key_holder: str, encrypt_ms: float, decrypt_ms: float) -> dict:
    """Who spends the encryption and decryption time under a key placement."""
    dev = key_holder == "device"
    return {"key_holder": key_holder, "encrypt_ms": encrypt_ms, "decrypt_ms": decrypt_ms,
            "device_ms": encrypt_ms + (decrypt_ms if dev else 0.0), "third_party_ms": 0.0 if dev else decrypt_ms}


def _placement_rows(m: dict, label: str) -> list[dict]:
    """One row per key placement from one engine measurement (the same evaluation serves both)."""
    prov = float(np.mean(m["provider_ms"]))
    common = {k: m[k] for k in ("engine", "list_size", "blocks", "result_ciphertexts", "slot_utilisation")}
    common |= {"provider_ms": prov, "provider_samples": list(m["provider_ms"]), "result_bytes": m["result_bytes"], "n_queries": m["n_queries"],
               "correct": m.get("correct"), "label": label}
    if "max_abs_error" in m:
        common["max_abs_error"] = m["max_abs_error"]
    dev = {**common, **_roles("device", m["encrypt_sk_ms"], m["decrypt_ms"]), "query_bytes": m["query_sk_bytes"],
           "keys_on_channel_bytes": m["public_bundle_bytes"], "device_storage_bytes": m["secret_key_bytes"] + m["device_bundle_bytes"],
           "keys_note": "device uploads its public bundle once; keeps its secret key, parameters and public key"}
    tp = {**common, **_roles("third-party", m["encrypt_pk_ms"], m["decrypt_ms"]), "query_bytes": m["query_pk_bytes"], "keys_on_channel_bytes": m["public_bundle_bytes"],
          "device_storage_bytes": m["device_bundle_bytes"],
          "keys_note": "third party sends the public bundle to the provider once; devices download params + public key"}
    return [dev, tp]


def fit_blocks(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``ms = a + b * blocks``; one distinct block count gives b = a / blocks."""
    b = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    if len(set(b.tolist())) < 2:
        return 0.0, float(y.mean() / b.mean())
    A = np.stack([np.ones_like(b), b], axis=1)
    (a0, a1), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(a0), float(a1)


def extrapolate(measured: list[dict], targets: Sequence[int] = EXTRAPOLATE_TO) -> list[dict]:
    out = []
    for eng in sorted({r["engine"] for r in measured}):
        rows = [r for r in measured if r["engine"] == eng and r["key_holder"] == "device"]
        a, b = fit_blocks([(r["blocks"], r["provider_ms"]) for r in rows])
        slots = 16384 if eng == "he-hamming" else 4096
        group = BfvParams().group() if eng == "he-hamming" else 1
        big = max(rows, key=lambda r: r["list_size"])
        per_ct = big["result_bytes"] / big["result_ciphertexts"]
        for n in targets:
            if n <= big["list_size"]:
                continue
            blocks = math.ceil(n / slots)
            cts = math.ceil(blocks / group)
            for r in [x for x in measured if x["engine"] == eng and x["list_size"] == big["list_size"]]:
                out.append({**r, "list_size": n, "blocks": blocks, "result_ciphertexts": cts,
                            "slot_utilisation": n / (blocks * slots), "provider_ms": a + b * blocks,
                            "result_bytes": int(round(per_ct * cts)), "n_queries": 0, "correct": None, "provider_samples": [],
                            **_roles(r["key_holder"], r["encrypt_ms"], r["decrypt_ms"] * cts / big["result_ciphertexts"]),
                            "label": "extrapolated", "fit": f"provider_ms = {a:.1f} + {b:.1f} * blocks"})
    return out


def bench_he(sizes: Sequence[int], *, n_queries: int = 2, seed: int = 0, engines: Sequence[str] = ENGINES,
             threshold: int = 31, similarity: float = 0.9286, progress=None) -> list[dict]:
    """Measured rows (both placements per engine and size) followed by the extrapolated rows."""
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"sizes must be positive integers, got {list(sizes)}")
    if sizes[-1] > 2_000_000:
        raise ConfigError(f"size {sizes[-1]} is too large to measure here (larger sizes are extrapolated)")
    if n_queries < 1:
        raise ConfigError(f"queries must be >= 1, got {n_queries}")
    for e in engines:
        if e not in ENGINES:
            raise ConfigError(f"unknown HE engine {e!r} (choose from {', '.join(ENGINES)})")
    measured = []
    steps, done = len(sizes) * len(engines), 0
    for eng in engines:
        for n in sizes:
            rng = np.random.default_rng([seed, n, ENGINES.index(eng)])
            m = _bench_hamming(n, n_queries, rng, threshold) if eng == "he-hamming" else _bench_cosine(n, n_queries, rng, similarity)
            measured.extend(_placement_rows(m, "measured"))
            done += 1
            if progress:
                progress("bench he", done, steps)
    return measured + extrapolate(measured)
