"""Cost of the PSI schemes, measured in one run next to one scalar multiplication.

Why: absolute microseconds depend on the machine; ratios to a variable-base scalar
multiplication measured in the same process do not (much). The goals checked here (issue
"tpsi-ad as Apple designed it"): psi-ad setup per list element at most OpenMined PSI's,
measured in the same run; bundle at most 40 bytes per element; the provider at most 1.5
scalar multiplications per voucher; the device at most 4 scalar multiplications plus one
hash-to-group per image (reported for both blindings: the paper's two-scalar one needs
2 + k variable-base multiplications, one fixed-base and 1 + k additions, see
``protocols.psi.device_mults``); and tpsi-ad's threshold work for one account-year.

List: ``size`` synthetic uniform 256-bit hashes (seeded), labelled as such. Images: half
are list members, half are not; every voucher is opened (or not) and the outcome is
checked against membership, so a fast but wrong run cannot pass. Device time covers the
voucher (hash-to-group, scalar multiplications, KDF, AES-GCM) from the perceptual hash
and the 16x16 derivative; the perceptual hash itself is common to all schemes and
excluded. Setup is timed ``repeats`` times for each library, interleaved, and the median
kept (the machine is shared). All times are ``time.process_time`` (CPU) per item.

The goal ratios divide by reference operations timed inside the voucher loop, each next to
the voucher it is compared with (see ``bench_psi_ad``; keys ``*_over_interleaved_*``): the
shared machine's load changes during a run, and a reference paired with each voucher sees
the load of that moment, while the warm loop runs once, before, at another load. (The
operation itself is not slower in the loop: the medians agree, 61-62 us interleaved and
62 us warm in the documented runs; the interleaved ratios merely scatter less.) The
warm-loop figures (``scalar_mult_us``, ``hash_to_group_us``) and the ratios to them keep
their names (``*_over_scalar_mult``, ``*_over_budget``, ``device_budget_in_warm_loop_scalar_mults``).
tpsi-ad's device and provider per voucher are reported too (no goal).

Threshold year (``year_images`` distinct images per account-year, an assumption; Apple's
t = 30): per synthetic rate p, the account holds Binomial(year_images, p) synthetic
vouchers (drawn) and t real ones arriving last (the worst case for the provider), with the
DHF size s set so that P[Binomial(year_images, p) > s] < 1e-6. Measured: the provider's
detection (every opened voucher through the DHF detector) and the interpolation.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from scipy.stats import binom

from e2eebench.evaluation.run.stats import mean_ci
from e2eebench.protocols.crypto_group import (hash_to_group_bytes, measure_base_mult, measure_hash_to_group,
                                              measure_scalar_mult, mul_bytes, random_scalar_bytes)
from e2eebench.protocols.crypto_sharing import measure_dhf_reconstruction
from e2eebench.protocols.errors import ConfigError
from e2eebench.protocols.psi import (BIND_BYTES, BLINDINGS, DERIV_BYTES, REPORT_PLAIN, binding, build_table,
                                     device_mults, load_table, make_voucher, open_voucher, tpsi_plain,
                                     voucher_len)

DATA_LABEL = "synthetic uniform 256-bit hashes"
N_HASHES, LOAD = 3, 0.85  # the PSI schemes' defaults
YEAR_RATES = (0.01, 0.05, 0.1, 0.2)


def _us(values: list[float]) -> dict[str, Any]:
    e = mean_ci(np.asarray(values) * 1e6)
    return {"mean": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n}


def time_psi_ad_setup(items: list[bytes], rng: np.random.Generator) -> tuple[float, Any, bytes]:
    t0 = time.process_time()
    pt, bundle = build_table(items, rng, N_HASHES, LOAD, b"PSB2")
    return time.process_time() - t0, pt, bundle


def bench_psi_ad(pt: Any, bundle: bytes, items: list[bytes], n_images: int, rng: np.random.Generator,
                 blinding: str) -> dict[str, Any]:
    """Device and provider time per voucher and, interleaved with them in the same loop, the
    reference operations the goals are stated in, so that reference and vouchers see the same
    machine load and cache state: on even iterations the device budget as one interval
    (hash-to-group of a fresh input, then 4 variable-base multiplications with fresh scalars on
    table points, in the voucher's order), on odd ones a block of 4 multiplications (the
    provider's unit, per multiplication). One pair of clock reads per interval, as for the
    vouchers (a read in the middle of an interval would add its own cost to it)."""
    dt = load_table(bundle, b"PSB2", "bench bundle")
    members = [items[i] for i in rng.choice(len(items), n_images // 2, replace=False)]
    others = [rng.bytes(32) for _ in range(n_images - len(members))]
    queries = [(x, True) for x in members] + [(x, False) for x in others]
    dev, prov, ref_mult, ref_budget, wrong = [], [], [], [], 0
    seen: set[bytes] = set()
    clock = time.process_time
    for j, (x, member) in enumerate(queries):
        ad = binding("bench-account", f"{blinding}-m{j}")
        deriv = rng.bytes(DERIV_BYTES)
        scalars = [random_scalar_bytes(rng.bytes) for _ in range(4)]
        point, fresh = dt.table[j % len(dt.table)], rng.bytes(32)
        t0 = clock()
        v = make_voucher(dt, x, ad + deriv, ad, b"PSV2", rng, blinding=blinding)
        t1 = clock()
        res = open_voucher(pt, v, ad, b"PSV2", REPORT_PLAIN, seen)
        ok = res is not None and res[1][:BIND_BYTES] == ad
        t2 = clock()
        if j % 2 == 0:
            hash_to_group_bytes(fresh, b"bench-reference")
        for sc in scalars:
            mul_bytes(sc, point)
        t3 = clock()
        dev.append(t1 - t0)
        prov.append(t2 - t1)
        (ref_budget if j % 2 == 0 else ref_mult).append(t3 - t2)
        wrong += ok != member
    return {"device": dev, "provider": prov, "ref_mult": [r / 4 for r in ref_mult], "ref_budget": ref_budget,
            "wrong_verdicts": wrong, "voucher_bytes": len(v)}


def bench_tpsi_ad(items: list[bytes], n_images: int, t: int, rng: np.random.Generator) -> dict[str, Any]:
    """tpsi-ad per voucher, one account (default synthetic rate and s), half the images listed,
    with a block of 4 variable-base multiplications timed in the same loop as the reference.
    Device: share, DHF value, PRFs, inner AES-GCM and the outer voucher; provider: opening, DHF
    detection, reconstruction when the t-th distinct real match arrives, classification after."""
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.protocols.channel import DEVICE, PROVIDER, Channel, Ledger, MessageContext, PartyClock
    from e2eebench.protocols.psi import TPsiAd
    from e2eebench.server.database import KnownHashDatabase
    scheme = TPsiAd(get_hasher("pdq"), t=t)
    ledger = Ledger()

    def ctx(mid: str) -> MessageContext:
        return MessageContext(mid, "bench-account", Channel(ledger), PartyClock(), rng)
    listed = np.frombuffer(b"".join(items), dtype=np.uint8).reshape(len(items), 32)
    db = KnownHashDatabase([f"bench-{i}" for i in range(len(items))], {"pdq": listed}, {}, "bench")
    pstate, bundle = scheme.provider_setup(db, ctx("setup"))
    dstate = scheme.device_load(bundle, "bench-account", ctx("load"))
    table = dstate["table"].table
    members = [items[i] for i in rng.choice(len(items), n_images // 2, replace=False)]
    queries = members + [rng.bytes(32) for _ in range(n_images - len(members))]
    order = rng.permutation(len(queries))
    dev, prov, ref = [], [], []
    clock = time.process_time
    for j in order.tolist():
        c = ctx(f"tpsi-m{j}")
        deriv = rng.bytes(DERIV_BYTES)
        scalars = [random_scalar_bytes(rng.bytes) for _ in range(4)]
        point = table[j % len(table)]
        t0 = clock()
        v = scheme.voucher_for(dstate, queries[j], deriv, c)
        t1 = clock()
        scheme.provider_receive(pstate, v, c)
        t2 = clock()
        for sc in scalars:
            mul_bytes(sc, point)
        t3 = clock()
        dev.append(t1 - t0)
        prov.append(t2 - t1)
        ref.append((t3 - t2) / 4)
    reported = len(ledger.learned_by(PROVIDER, "report"))
    # the scheme's rule (TPsiAd.account_verdicts) for one account of distinct images: every listed
    # image sent as a real voucher is reported once t of them are in, none before
    synthetic = {x.message_id for x in ledger.learned_by(DEVICE, "synthetic_sent")}
    real_listed = sum(f"tpsi-m{j}" not in synthetic for j in range(len(members)))
    return {"device": dev, "provider": prov, "ref_mult": ref, "reported": reported,
            "expected_reports": real_listed if real_listed >= t else 0,
            "voucher_bytes": len(v), "reconstruct_s": pstate["reconstruct_s"]}


def time_openmined_setup(items: list[bytes], rng: np.random.Generator, fpr: float = 1e-6):
    import private_set_intersection.python as psi
    from e2eebench.protocols.psi_openmined import p256_key
    server = psi.server.CreateFromKey(p256_key(rng), False)
    t0 = time.process_time()
    setup = server.CreateSetupMessage(fpr, 1, items, psi.DataStructure.GCS)
    return time.process_time() - t0, server, setup


def bench_openmined(server: Any, setup: Any, items: list[bytes], n_images: int,
                    rng: np.random.Generator) -> dict[str, Any]:
    import private_set_intersection.python as psi
    from e2eebench.protocols.psi_openmined import p256_key
    client = psi.client.CreateFromKey(p256_key(rng), False)
    blob = setup.SerializeToString()
    members = [items[i] for i in rng.choice(len(items), n_images // 2, replace=False)]
    queries = [(x, True) for x in members] + [(rng.bytes(32), False) for _ in range(n_images - len(members))]
    dev, prov, wrong = [], [], 0
    for x, member in queries:
        t0 = time.process_time()
        req = client.CreateRequest([x]).SerializeToString()
        t1 = time.process_time()
        resp = server.ProcessRequest(psi.Request.FromString(req)).SerializeToString()
        t2 = time.process_time()
        match = client.GetIntersectionSize(setup, psi.Response.FromString(resp)) > 0
        t3 = time.process_time()
        dev.append((t1 - t0) + (t3 - t2))
        prov.append(t2 - t1)
        wrong += match != member
    return {"bundle_bytes": len(blob), "device": dev, "provider": prov, "wrong_verdicts": wrong}


def dhf_size_for(n_images: int, rate: float, tail: float = 1e-6) -> int:
    """Smallest s with P[Binomial(n_images, rate) > s] < tail: the synthetic budget per account-year."""
    return max(1, int(binom.isf(tail, n_images, rate)) + 1)


def threshold_year(t: int, n_images: int, rates: tuple[float, ...], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 30])
    out: dict[str, Any] = {"tpsi_year_images": n_images, "tpsi_year_t": t}
    for p in rates:
        s = dhf_size_for(n_images, p)
        f = int(rng.binomial(n_images, p))
        r = measure_dhf_reconstruction(t, t, min(f, s), s, seed=seed)
        k = f"tpsi_year_p{p:g}"
        out |= {f"{k}_synthetic": f, f"{k}_dhf_s": s,
                f"{k}_voucher_bytes": voucher_len(N_HASHES, tpsi_plain(s)),
                f"{k}_reconstruct_s": r["detect_s"] + r["interpolate_s"],
                f"{k}_per_opened_voucher_ms": 1e3 * (r["detect_s"] + r["interpolate_s"]) / r["opened"]}
    return out


def bench_psi(size: int = 2000, n_images: int = 200, seed: int = 0, t: int = 30, year_images: int = 3650,
              rates: tuple[float, ...] = YEAR_RATES, repeats: int = 3) -> dict[str, Any]:
    """One run: scalar mult, psi-ad (both blindings) and openmined-psi costs, their ratios and
    the goals they meet; tpsi-ad's threshold work for one account-year (flat dict)."""
    if size < 10:
        raise ConfigError(f"--size must be at least 10, got {size}")
    if not 2 <= n_images <= size:
        raise ConfigError(f"--images must be in 2..size, got {n_images}")
    if year_images < t:
        raise ConfigError(f"--year-images must be at least t={t}, got {year_images}")
    rng = np.random.default_rng(seed)
    items = sorted({rng.bytes(32) for _ in range(size)})
    sm, bm, h2g = measure_scalar_mult(400), measure_base_mult(400), measure_hash_to_group(400)
    ad_setup, om_setup = [], []
    for _ in range(max(1, repeats)):  # interleaved: both see the same machine load
        s_ad, pt, bundle = time_psi_ad_setup(items, rng)
        s_om, server, setup = time_openmined_setup(items, rng)
        ad_setup.append(s_ad)
        om_setup.append(s_om)
    om = bench_openmined(server, setup, items, n_images, rng)
    n = len(items)
    sm_us, h2g_us, bm_us = sm * 1e6, h2g * 1e6, bm * 1e6
    out: dict[str, Any] = {"list_size": n, "list": DATA_LABEL, "images": n_images, "seed": seed,
                           "cuckoo_hashes": N_HASHES, "cuckoo_load": LOAD,
                           "scalar_mult_us": sm_us, "base_mult_us": bm_us, "hash_to_group_us": h2g_us}
    wrong = om["wrong_verdicts"]
    budget = 4 * sm_us + h2g_us
    for blinding in BLINDINGS:
        ad = bench_psi_ad(pt, bundle, items, n_images, rng, blinding)
        d, p = _us(ad["device"]), _us(ad["provider"])
        rm, rb = float(np.mean(ad["ref_mult"])) * 1e6, float(np.mean(ad["ref_budget"])) * 1e6
        b = blinding.replace("-", "_")
        cnt = device_mults(N_HASHES, blinding)
        out |= {f"psi_ad_{b}_device_per_image_us": d["mean"], f"psi_ad_{b}_device_per_image_ci": [d["ci_low"], d["ci_high"]],
                f"psi_ad_{b}_provider_per_voucher_us": p["mean"],
                f"psi_ad_{b}_interleaved_scalar_mult_us": rm, f"psi_ad_{b}_interleaved_budget_us": rb,
                f"psi_ad_{b}_device_variable_base_mults": cnt["variable_base"],
                f"psi_ad_{b}_device_fixed_base_mults": cnt["fixed_base"],
                f"psi_ad_{b}_device_point_additions": cnt["additions"],
                f"psi_ad_{b}_interleaved_budget_in_scalar_mults": rb / rm,
                f"psi_ad_{b}_device_per_image_over_interleaved_scalar_mult": d["mean"] / rm,
                f"psi_ad_{b}_device_per_image_over_interleaved_budget": d["mean"] / rb,
                f"psi_ad_{b}_provider_per_voucher_over_interleaved_scalar_mult": p["mean"] / rm,
                # the warm-loop references, under the names they have always had
                f"psi_ad_{b}_device_per_image_over_scalar_mult": d["mean"] / sm_us,
                f"psi_ad_{b}_device_per_image_over_budget": d["mean"] / budget,
                f"psi_ad_{b}_provider_per_voucher_over_scalar_mult": p["mean"] / sm_us,
                f"psi_ad_{b}_voucher_bytes": ad["voucher_bytes"]}
        wrong += ad["wrong_verdicts"]
    tp = bench_tpsi_ad(items, n_images, t, rng)
    tm = float(np.mean(tp["ref_mult"])) * 1e6
    td, tpv = _us(tp["device"]), _us(tp["provider"])
    out |= {"tpsi_ad_t": t, "tpsi_ad_device_per_image_us": td["mean"], "tpsi_ad_provider_per_voucher_us": tpv["mean"],
            "tpsi_ad_interleaved_scalar_mult_us": tm,
            "tpsi_ad_device_per_image_over_interleaved_scalar_mult": td["mean"] / tm,
            "tpsi_ad_provider_per_voucher_over_interleaved_scalar_mult": tpv["mean"] / tm,
            "tpsi_ad_voucher_bytes": tp["voucher_bytes"], "tpsi_ad_reports": tp["reported"],
            "tpsi_ad_expected_reports": tp["expected_reports"],
            "tpsi_ad_listed_images": n_images // 2}
    ad_s, om_s = float(np.median(ad_setup)), float(np.median(om_setup))
    op = _us(om["provider"])
    out |= {
        "device_budget_in_warm_loop_scalar_mults": 4 + h2g_us / sm_us,
        "psi_ad_wrong_verdicts": wrong - om["wrong_verdicts"], "openmined_wrong_verdicts": om["wrong_verdicts"],
        "psi_ad_setup_us_per_element": ad_s * 1e6 / n, "openmined_setup_us_per_element": om_s * 1e6 / n,
        "psi_ad_setup_over_openmined_setup": ad_s / om_s,
        "psi_ad_bundle_bytes_per_element": len(bundle) / n,
        "openmined_bundle_bytes_per_element": om["bundle_bytes"] / n,
        "psi_ad_bundle_over_openmined_bundle": len(bundle) / om["bundle_bytes"],
        "psi_ad_cuckoo_slots": pt.n_slots,
        "openmined_device_per_image_us": _us(om["device"])["mean"], "openmined_provider_per_request_us": op["mean"],
        "psi_ad_provider_over_openmined_provider": out["psi_ad_two_scalar_provider_per_voucher_us"] / op["mean"],
        # kept under their old names and meaning (warm-loop references): the default (two-scalar) blinding
        "provider_per_voucher_over_scalar_mult": out["psi_ad_two_scalar_provider_per_voucher_over_scalar_mult"],
        "device_per_image_over_budget": out["psi_ad_two_scalar_device_per_image_over_budget"],
    }
    out |= threshold_year(t, year_images, rates, seed)
    goals = {
        "setup_per_element_over_openmined": (out["psi_ad_setup_over_openmined_setup"], 1.0),
        "bundle_bytes_per_element": (out["psi_ad_bundle_bytes_per_element"], 40.0),
    }
    for bl in BLINDINGS:
        b = bl.replace("-", "_")
        goals[f"provider_per_voucher_in_scalar_mults[{bl}]"] = (
            out[f"psi_ad_{b}_provider_per_voucher_over_interleaved_scalar_mult"], 1.5)
        goals[f"device_per_image_over_4_mults_plus_h2g[{bl}]"] = (
            out[f"psi_ad_{b}_device_per_image_over_interleaved_budget"], 1.0)
    out["goals"] = {k: {"value": v, "goal": f"<= {g:g}", "met": bool(v <= g)} for k, (v, g) in goals.items()}
    out["load_average_1min"] = os.getloadavg()[0]
    out["checks"] = {
        "setup_per_element_at_most_openmined": out["goals"]["setup_per_element_over_openmined"]["met"],
        "bundle_at_most_40_bytes_per_element": out["goals"]["bundle_bytes_per_element"]["met"],
        "provider_within_1.5_scalar_mults": all(out["goals"][f"provider_per_voucher_in_scalar_mults[{b}]"]["met"]
                                                for b in BLINDINGS),
        "device_within_4_scalar_mults_plus_h2g[one-scalar]":
            out["goals"]["device_per_image_over_4_mults_plus_h2g[one-scalar]"]["met"],
        "device_within_4_scalar_mults_plus_h2g[two-scalar]":
            out["goals"]["device_per_image_over_4_mults_plus_h2g[two-scalar]"]["met"],
        "verdicts_correct": wrong == 0,
    }
    return out
