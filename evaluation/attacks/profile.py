"""Per-scheme security profile: which attacks apply, and the measured success rates.

Applicability is measured from each scheme's real roles, not read from its metadata:

- oracle class (:mod:`e2eebench.evaluation.attacks.oracle`): offline / online / none;
- ``list_hashes_exposed``: do the list's hashes appear verbatim in the device bundle (the
  collision attacker's targets)? A byte search of the bundle for every list hash;
- dishonest-client outcomes (:mod:`e2eebench.evaluation.attacks.dishonest`);
- ``list_auditable``: does the device end up holding a commitment to the list that is the
  same for every honest setup (so it can be published) and changes when one entry is
  added (a targeted list)? Probed with two independent setups and one modified list.

Evasion and collision rates belong to the hasher, not the protocol: every scheme here uses
a public perceptual-hash algorithm, so white-box evasion applies to all of them (the
attacker runs the algorithm himself). A collision needs a target hash: measured once per
hasher and attached to every scheme with ``applies`` saying whether that scheme hands the
attacker the targets (otherwise the rate holds only if hashes leak).
"""
from __future__ import annotations

from typing import Any, Callable

from e2eebench.clientside.hashing import Hasher
from e2eebench.evaluation.attacks.dishonest import MANIPULATIONS, probe_dishonest, relay_swap_detected
from e2eebench.evaluation.attacks.oracle import candidate_pool, run_oracle, tiny_setup
from e2eebench.evaluation.run.stats import wilson
from e2eebench.evaluation.run.store import Measurement
from e2eebench.protocols.errors import ProtocolError
from e2eebench.protocols.registry import scheme_class
from e2eebench.server.database import KnownHashDatabase

Progress = Callable[[str, int, int], None]


def hashes_in_bundle(name: str, hasher: Hasher, db: KnownHashDatabase, seed: int = 0) -> bool:
    """True if every list hash occurs verbatim in the scheme's device bundle."""
    scheme = scheme_class(name)(hasher)
    from e2eebench.evaluation.attacks.oracle import make_ctx
    from e2eebench.protocols.channel import PROVIDER, Channel, PartyClock
    _, bundle = scheme.provider_setup(db, make_ctx(Channel(), PartyClock(), "setup", PROVIDER, seed))
    hs = db.hashes_for(hasher.name)
    return bool(len(hs)) and all(h.tobytes() in bundle for h in hs)


def _find_root(state: Any, depth: int = 2) -> bytes | None:
    """The list commitment a device state holds (a ``root`` key or attribute, one level deep)."""
    r = state.get("root") if isinstance(state, dict) else getattr(state, "root", None)
    if isinstance(r, bytes) or depth == 0:
        return r if isinstance(r, bytes) else None
    inner = state.values() if isinstance(state, dict) else getattr(state, "__dict__", {}).values()
    for v in inner:
        if not isinstance(v, (bytes, str, int, float)) and (r := _find_root(v, depth - 1)) is not None:
            return r
    return None


def audit_probe(name: str, hasher: Hasher, known: list, extra: Any, seed: int = 0) -> tuple[bool, str]:
    """Can a device compare the list it holds with a published digest (and catch a targeted list)?"""
    db = KnownHashDatabase.from_images(known, [hasher])
    db2 = KnownHashDatabase.from_images(list(known) + [extra], [hasher])

    def root(d: KnownHashDatabase, s: int):
        try:
            st = tiny_setup(name, hasher, d, s)[2]
        except ProtocolError as e:
            return f"error:{type(e).__name__}"
        return _find_root(st)

    r1, r2, r3 = root(db, seed), root(db, seed + 1), root(db2, seed)
    if not isinstance(r1, bytes):
        return False, "the device holds no list commitment to compare with a published digest"
    if r1 != r2:
        return False, "the device's list commitment differs between honest setups (cannot be published)"
    if r1 == r3:
        return False, "the commitment does not change when an entry is added"
    return True, "device recomputes a root digest; a published root exposes a modified or targeted list"


def scheme_profile(name: str, hasher: Hasher, pool: tuple, seed: int = 0) -> dict:
    """Measured applicability and dishonest-client outcomes for one scheme."""
    known, unrelated, _ = pool
    small = known[:6]
    o = run_oracle(name, hasher, pool_data=pool, seed=seed)
    db = KnownHashDatabase.from_images(small, [hasher])
    exposed = hashes_in_bundle(name, hasher, db, seed)
    dis = probe_dishonest(name, hasher, small, unrelated[:2], seed)
    auditable, why = audit_probe(name, hasher, small, unrelated[2], seed)
    return {"scheme": name, "oracle": o, "hashes_exposed": exposed, "dishonest": dis,
            "auditable": auditable, "audit_reason": why, "e2ee": scheme_class(name).e2ee}


def profile_measurements(profiles: list[dict], hasher: Hasher, evasion: dict[str, dict],
                         collision: dict | None, relay: dict[str, bool]) -> list[Measurement]:
    """Turn profiles and the hasher's attack summaries into store measurements per scheme."""
    out: list[Measurement] = []
    for p in profiles:
        s = p["scheme"]
        base = {"hasher": hasher.name}
        o = p["oracle"]
        out.append(Measurement(s, "membership_oracle_class", None, "text", 1, params=base,
                               text=f"{o.oracle}: {o.reason}"))
        if o.oracle == "offline":
            out.append(Measurement(s, "oracle_queries_per_s", o.queries_per_s, "1/s", o.candidates,
                                   params=base | {"list": o.list_size, "candidates": o.candidates}))
            ci = wilson(o.confirmed_jpeg, o.list_size)
            out.append(Measurement(s, "oracle_list_confirmed", ci.value if o.list_size else None, "rate",
                                   o.list_size, ci.ci_low, ci.ci_high, params=base | {"copies": "jpeg q=75"},
                                   text=f"exact copies confirmed {o.confirmed_exact}/{o.list_size}; "
                                        f"false hits {o.false_hits}"))
        else:
            out.append(Measurement(s, "oracle_queries_per_s", None, "1/s", 0, params=base,
                                   text=o.reason, label="measured"))
        out.append(Measurement(s, "list_hashes_exposed", float(p["hashes_exposed"]), "bool", 1, params=base))
        for m in MANIPULATIONS[1:]:
            v = p["dishonest"].noticed(m)
            out.append(Measurement(s, f"payload_{m}_detected", None if v is None else float(v), "bool", 1,
                                   params=base, text=p["dishonest"].outcomes.get(m)))
        out.append(Measurement(s, "list_auditable", float(p["auditable"]), "bool", 1, params=base,
                               text=p["audit_reason"]))
        if p["e2ee"]:
            out.append(Measurement(s, "relay_payload_swap_detected", float(all(relay.values())), "bool",
                                   len(relay), params=base, text=", ".join(f"{k}: {v}" for k, v in relay.items())))
        for mode, e in evasion.items():
            out.append(Measurement(s, "evasion_success_rate", e["success_rate"], "rate", e["n"], e["ci_low"],
                                   e["ci_high"], base | {"mode": mode, "budget": e["budget"], "applies": True} | _floor_params(e),
                                   text="hash algorithm public: the attacker runs it himself"))
            if e["psnr_db"]["median"] is not None:
                out.append(Measurement(s, "evasion_psnr_db", e["psnr_db"]["median"], "dB", e["successes"],
                                       e["psnr_db"]["p10"], e["psnr_db"]["p90"], base | {"mode": mode, "stat": "median [p10, p90]"}))
                out.append(Measurement(s, "evasion_ssim", e["ssim"]["median"], "ssim", e["successes"],
                                       e["ssim"]["p10"], e["ssim"]["p90"], base | {"mode": mode, "stat": "median [p10, p90]"}))
        if collision is not None:
            applies = p["hashes_exposed"]
            out.append(Measurement(s, "collision_success_rate", collision["success_rate"], "rate", collision["n"],
                                   collision["ci_low"], collision["ci_high"],
                                   base | {"mode": collision["mode"], "budget": collision["budget"], "applies": applies}
                                   | _floor_params(collision),
                                   text=None if applies else "targets not in the bundle: holds only if list hashes leak"))
            sec = collision.get("with_secret_second_hash")
            if sec:
                out.append(Measurement(s, "collision_success_rate_second_hash", sec["success_rate"], "rate",
                                       sec["n"], sec["ci_low"], sec["ci_high"],
                                       base | {"second_hasher": sec["second_hasher"], "applies": applies}))
    return out


def run_profile(names: list[str], hasher: Hasher, evasion: dict[str, dict], collision: dict | None,
                seed: int = 0, n_candidates: int = 300, progress: Progress | None = None) -> tuple[list[dict], list[Measurement]]:
    pool = candidate_pool(hasher, 20, n_candidates, seed)
    profiles = []
    for i, n in enumerate(names):
        profiles.append(scheme_profile(n, hasher, pool, seed))
        if progress:
            progress("security profile", i + 1, len(names))
    return profiles, profile_measurements(profiles, hasher, evasion, collision, relay_swap_detected(seed))


# -- per-run metrics: the security column of every `run` ------------------------------------
ATTACK_IMAGES = {"quick": 4}   # images per hasher attack inside a run, by profile; any other: 200
STANDARD_ATTACK_IMAGES = 200
SLOW_FAMILIES = ("he",)    # HE setups cost tens of seconds: probed by `attack profile` only
THR_SOURCE = "the scheme's own (0 for exact matching)"
ORACLE_LEVEL = {"none": 0.0, "online": 1.0, "offline": 2.0}
_RUN_CACHE: dict[tuple, tuple[dict, dict | None]] = {}


def attack_images(config) -> int:
    """How many images the run's evasion and collision attacks use: the config's
    ``attack_images`` if set, else by profile (quick: 4; standard and larger: 200)."""
    n = getattr(config, "attack_images", None)
    if n:
        return int(n)
    return ATTACK_IMAGES.get(getattr(config, "profile", "quick"), STANDARD_ATTACK_IMAGES)


def _run_attacks(data, threshold: int | None) -> tuple[dict, dict | None]:
    """White-box evasion and collision on the run's own list images at the scheme's threshold,
    once per run data and threshold."""
    from e2eebench.evaluation.attacks.collision import collide_pairs, summarise_collisions
    from e2eebench.evaluation.attacks.evasion import WHITEBOX_HASHERS, run_evasion, summarise
    h = data.hasher
    n = attack_images(data.config)
    known = data.known[:n]
    starts = (list(data.benign) + list(data.known[n:]))[:len(known)]
    key = (h.name, data.config.seed, threshold, tuple(k.id for k in known), tuple(b.id for b in starts))
    if key not in _RUN_CACHE:
        imgs = [(k.id, k.image) for k in known]
        seed = data.config.seed
        if h.name in WHITEBOX_HASHERS:
            ev = {"white-box": summarise(run_evasion(h, imgs, "white-box", 400, seed, threshold=threshold), h, 400,
                                         threshold=threshold, threshold_source=THR_SOURCE)}
            pairs = [(k.id, k.image, b.id, b.image) for k, b in zip(known, starts)]
            col = summarise_collisions(collide_pairs(h, pairs, "white-box", 400, seed, threshold=threshold), h, 400,
                                       threshold=threshold, threshold_source=THR_SOURCE)
        else:
            ev = {"black-box": summarise(run_evasion(h, imgs, "black-box", 200, seed, threshold=threshold), h, 200,
                                         threshold=threshold, threshold_source=THR_SOURCE)}
            col = None
        if len(_RUN_CACHE) > 4:
            _RUN_CACHE.clear()
        _RUN_CACHE[key] = (ev, col)
    return _RUN_CACHE[key]


def run_security_metrics(run, data) -> list[Measurement]:
    """Security measurements for one scheme of a run (attack rates on the run's list images at the
    scheme's threshold and above the quality floor; the attacker access the scheme's roles give;
    dishonest-client and audit probes through the scheme's own roles)."""
    name, h = run.name, data.hasher
    thr = scheme_threshold(run.scheme)
    ev, col = _run_attacks(data, thr)
    small, other = data.known[:3], data.benign[:3]
    if scheme_class(name).family in SLOW_FAMILIES:
        why = "not probed inside a run (HE setup cost): e2eebench attack profile --schemes " + name
        ms = [Measurement(name, m, None, "bool", 0, params={"hasher": h.name}, text=why, label="declared")
              for m in ("payload_strip_detected", "payload_forge_detected", "list_auditable")]
        ms.append(Measurement(name, "attacker_oracle_access", None, "level", 0, params={"hasher": h.name}, text=why,
                              label="declared"))
        return ms + _attack_rows(name, h, ev, col, applies=None)
    db = KnownHashDatabase.from_images(small, [h])
    exposed = hashes_in_bundle(name, h, db, data.config.seed)
    dis = probe_dishonest(name, h, small, other[:2], data.config.seed)
    auditable, why = audit_probe(name, h, small, other[2], data.config.seed)
    from e2eebench.evaluation.attacks.oracle import probe_oracle
    o = probe_oracle(name, h, small, other, data.config.seed)
    base = {"hasher": h.name}
    out = [Measurement(name, "list_hashes_exposed", float(exposed), "bool", 1, params=base),
           Measurement(name, "list_auditable", float(auditable), "bool", 1, params=base, text=why),
           Measurement(name, "attacker_oracle_access", ORACLE_LEVEL[o.oracle], "level", 1,
                       params=base | {"levels": "0 none, 1 online, 2 offline", "probe_images": 4},
                       text=f"{o.oracle}: {o.reason}")]
    for m in MANIPULATIONS[1:]:
        v = dis.noticed(m)
        out.append(Measurement(name, f"payload_{m}_detected", None if v is None else float(v), "bool", 1,
                               params=base | dis.params, text=dis.outcomes.get(m)))
    return out + _attack_rows(name, h, ev, col, applies=exposed)


def scheme_threshold(scheme) -> int | None:
    """The Hamming distance at which the scheme still matches: 0 for exact matching (a hash
    one bit away is a miss), else its configured threshold."""
    if getattr(scheme, "matching", "") == "exact":
        return 0
    return getattr(scheme, "threshold", None)


def _floor_params(e: dict) -> dict:
    f = e.get("quality_floor") or {}
    return {"threshold": e.get("threshold"), "psnr_floor_db": f.get("psnr_db"), "ssim_floor": f.get("ssim")}


def _attack_rows(name: str, h: Hasher, ev: dict, col: dict | None, applies: bool | None) -> list[Measurement]:
    base = {"hasher": h.name}
    out = []
    for mode, e in ev.items():
        out.append(Measurement(name, "evasion_success_rate", e["success_rate"], "rate", e["n"], e["ci_low"],
                               e["ci_high"], base | {"mode": mode, "budget": e["budget"]} | _floor_params(e),
                               text="hash algorithm public: the attacker runs it himself; success counted only "
                                    "above the quality floor"))
        if e["psnr_db"]["median"] is not None:
            # ci_low / ci_high hold the 10th and 90th percentiles here, not a 95% interval: say so
            out.append(Measurement(name, "evasion_psnr_db", e["psnr_db"]["median"], "dB", e["successes"],
                                   e["psnr_db"]["p10"], e["psnr_db"]["p90"],
                                   base | {"mode": mode, "stat": "median [p10, p90]"}))
    if col is not None:
        fp = _floor_params(col)
        out.append(Measurement(name, "collision_success_rate", col["success_rate"], "rate", col["n"],
                               col["ci_low"], col["ci_high"], base | {"mode": col["mode"], "applies": applies} | fp,
                               text=None if applies else "targets not in the bundle: holds if list hashes leak"))
        sec = col.get("with_secret_second_hash")
        if sec:
            out.append(Measurement(name, "collision_success_rate_second_hash", sec["success_rate"], "rate", sec["n"],
                                   sec["ci_low"], sec["ci_high"],
                                   base | {"mode": col["mode"], "second_hasher": sec["second_hasher"],
                                           "applies": applies} | fp,
                                   text="Apple's mitigation: a match also needs the provider's secret second hash; "
                                        "no scheme here deploys it"))
    return out
