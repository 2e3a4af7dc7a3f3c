"""Collision / false accusation: make an innocuous image hash within the threshold of a
target list hash.

The attacker needs the target hash: he has it wherever the list ships in the clear (the
``on-device-list`` bundle) or leaks. Starting from an unrelated image, the white-box
attack (PDQ, pHash) solves, under the same finite-difference linear model as the
white-box evasion (:mod:`e2eebench.evaluation.attacks.evasion`), for the least-norm
low-frequency perturbation that puts every margin on the target bit's side, re-measures
the real margins and corrects, then shrinks the perturbation by bisection while the real
hash stays within the threshold. The black-box variant is random search on the Hamming
distance to the target (hash queries only).

Mitigations measured here: a **secret second hash** at the provider (a match on the
attacked hasher is confirmed only if a different hasher, whose list the attacker does
not hold, also matches the target's original image: Apple's planned server-side check);
and the **account threshold t** (a false accusation needs t crafted images; the success
of a batch is the binomial tail of the measured per-image rate: labelled modelled).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import Hasher, get_hasher, hamming, to_rgb
from e2eebench.evaluation.attacks.evasion import (BASIS_SIZE, DEFAULT_FLOOR, AttackResult, LowFreqBasis, Oracle,
                                                 QualityFloor,
                                                 _finish, _shrink, jacobian, perturb, random_search,
                                                 single_thread)
from e2eebench.evaluation.run.stats import wilson
from e2eebench.protocols.errors import ConfigError

Progress = Callable[[str, int, int], None]


def whitebox_collision(hasher: Hasher, start: Image.Image, target: np.ndarray, budget: int = 400,
                       image_id: str = "", rounds: int = 8, shrink_steps: int = 8,
                       keep_image: bool = False, threshold: int | None = None) -> AttackResult:
    """Forge ``start`` so its hash lands within the threshold of ``target`` (white-box)."""
    from e2eebench.evaluation.attacks.evasion import require_whitebox
    require_whitebox(hasher)
    x = np.asarray(to_rgb(start))
    oracle = Oracle(hasher)
    basis = LowFreqBasis(x.shape[0], x.shape[1], BASIS_SIZE[hasher.name])
    if budget < basis.size + 2 * rounds:
        raise ConfigError(f"white-box collision budget {budget} below {basis.size + 2 * rounds} queries")
    thr = hasher.default_threshold if threshold is None else int(threshold)
    ok = lambda hq: hamming(hq, target) <= thr  # noqa: E731
    want = np.unpackbits(target).astype(np.float64) * 2 - 1
    m0 = oracle.margins(x)
    J = jacobian(oracle, x, basis, m0)
    gamma = 0.3 * (float(np.median(np.abs(m0))) or 1.0)
    c = np.zeros(basis.size)
    m = m0
    for _ in range(rounds):
        if oracle.queries + shrink_steps + 2 >= budget:
            break
        goal = want * np.maximum(np.abs(m), gamma)
        c = c + np.linalg.lstsq(J, goal - m, rcond=None)[0]
        xs = perturb(x, basis.render(c))
        hq = oracle.hash(xs)
        if ok(hq):
            delta, xs = _shrink(oracle, x, basis.render(c), ok, min(shrink_steps, budget - oracle.queries))
            return _finish(image_id, "white-box", oracle, x, xs,
                           hamming(hasher.hash(Image.fromarray(xs)), target), True, keep_image)
        m = oracle.margins(xs)
        gamma *= 1.5
    return _finish(image_id, "white-box", oracle, x, x, hamming(hasher.hash(Image.fromarray(x)), target),
                   False, keep_image)


def blackbox_collision(hasher: Hasher, start: Image.Image, target: np.ndarray, budget: int = 1000,
                       seed: int = 0, image_id: str = "", keep_image: bool = False,
                       threshold: int | None = None) -> AttackResult:
    """Random search on the distance to ``target`` with hash queries only."""
    x = np.asarray(to_rgb(start))
    oracle = Oracle(hasher)
    basis = LowFreqBasis(x.shape[0], x.shape[1], BASIS_SIZE.get(hasher.name, 12))
    thr = hasher.default_threshold if threshold is None else int(threshold)
    ok = lambda hq: hamming(hq, target) <= thr  # noqa: E731
    delta, _ = random_search(oracle, x, basis, lambda hq: -hamming(hq, target), ok, budget - 6,
                             np.random.default_rng(seed), psnr_start=30.0, psnr_floor=14.0, psnr_step=2.0)
    if delta is None:
        return _finish(image_id, "black-box", oracle, x, x, hamming(hasher.hash(Image.fromarray(x)), target),
                       False, keep_image)
    delta, xs = _shrink(oracle, x, delta, ok, 6)
    return _finish(image_id, "black-box", oracle, x, xs, hamming(hasher.hash(Image.fromarray(xs)), target),
                   True, keep_image)


@dataclass
class CollisionCase:
    """One attempt: the start image, the target list entry, the forged result."""

    result: AttackResult
    target_id: str
    start: np.ndarray = field(repr=False)
    target_image: np.ndarray = field(repr=False)
    second_distance: int | None = None   # secret second hash: forged vs target original

    def record(self) -> dict:
        return {**self.result.record(), "target_id": self.target_id, "second_distance": self.second_distance}


def collide_pairs(hasher: Hasher, pairs: list[tuple[str, Image.Image, str, Image.Image]],
                  mode: str = "white-box", budget: int = 400, seed: int = 0, second: str | None = "auto",
                  progress: Progress | None = None, threshold: int | None = None) -> list[CollisionCase]:
    """One attempt per (target id, target image, start id, start image); the target's hash is the goal."""
    if mode not in ("black-box", "white-box"):
        raise ConfigError(f"collision mode must be black-box or white-box, got {mode!r}")
    sec = None if second is None else get_hasher(("phash" if hasher.name == "pdq" else "pdq")
                                                 if second == "auto" else second)
    if sec is not None and sec.name == hasher.name:
        raise ConfigError("the secret second hash must differ from the attacked hasher")
    out = []
    with single_thread():
        for i, (tid, timg, sid, simg) in enumerate(pairs):
            target = hasher.hash(timg)
            if mode == "white-box":
                r = whitebox_collision(hasher, simg, target, budget, image_id=sid, keep_image=True,
                                       threshold=threshold)
            else:
                r = blackbox_collision(hasher, simg, target, budget, seed=seed * 7919 + i, image_id=sid,
                                       keep_image=True, threshold=threshold)
            case = CollisionCase(r, tid, np.asarray(to_rgb(simg)), np.asarray(to_rgb(timg)))
            if sec is not None and r.success:
                case.second_distance = hamming(sec.hash(Image.fromarray(r.image)), sec.hash(timg))
            out.append(case)
            if progress:
                progress(f"collision {hasher.name} {mode}", i + 1, len(pairs))
    return out


def run_collisions(hasher: Hasher, n: int, mode: str = "white-box", budget: int = 400, seed: int = 0,
                   corpus: str = "dead-leaves", second: str | None = "auto",
                   progress: Progress | None = None, threshold: int | None = None) -> list[CollisionCase]:
    """n attempts: target i = corpus item i (a list entry), start = item n + i (innocuous)."""
    from e2eebench.evaluation.attacks.evasion import corpus_images
    items = corpus_images(corpus, 2 * n, seed)
    pairs = [(items[i][0], items[i][1], items[n + i][0], items[n + i][1]) for i in range(n)]
    return collide_pairs(hasher, pairs, mode, budget, seed, second, progress, threshold)


def threshold_success(p: float, attempts: int, t: int) -> float:
    """P(at least t of ``attempts`` independent forgeries succeed) at per-attempt rate p (modelled)."""
    from scipy.stats import binom
    return float(binom.sf(t - 1, attempts, p)) if attempts >= t else 0.0


def summarise_collisions(cases: list[CollisionCase], hasher: Hasher, budget: int,
                         second: str | None = None, t: int = 30, floor: QualityFloor = DEFAULT_FLOOR,
                         threshold: int | None = None, threshold_source: str | None = None) -> dict:
    """Collision success above the quality floor at the attacked threshold; with the secret
    second hash, the share that also passes the second hasher (Apple's mitigation)."""
    from e2eebench.evaluation.attacks.evasion import summarise
    s = summarise([c.result for c in cases], hasher, budget, goal="collision", floor=floor, threshold=threshold,
                  threshold_source=threshold_source)
    wins = [c for c in cases if floor.admits(c.result)]
    if second is not None or any(c.second_distance is not None for c in cases):
        sec = get_hasher(second) if second else get_hasher("phash" if hasher.name == "pdq" else "pdq")
        both = sum(c.second_distance is not None and c.second_distance <= sec.default_threshold for c in wins)
        e = wilson(both, len(cases))
        s["with_secret_second_hash"] = {
            "second_hasher": sec.name, "second_threshold": sec.default_threshold,
            "counts": "collisions above the quality floor that also match on the second hash",
            "success_rate": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": len(cases),
            "second_distance_median": (float(np.median([c.second_distance for c in wins])) if wins else None)}
    p = s["success_rate"] if cases else 0.0
    s["account_threshold"] = {
        "t": t, "label": "modelled",
        "attempts_needed_expected": (t / p) if p else None,
        "p_false_flag_with_t_attempts": threshold_success(p, t, t),
        "p_false_flag_with_2t_attempts": threshold_success(p, 2 * t, t)}
    return s


def render_collision_figure(path: str | Path, case: CollisionCase, hasher: Hasher) -> dict:
    """Write the pair (start, forged) beside the target's original, with distances, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    r = case.result
    if r.image is None:
        raise ConfigError("collision case holds no forged image")
    d_start = hamming(hasher.hash(Image.fromarray(case.start)), hasher.hash(Image.fromarray(case.target_image)))
    fig, ax = plt.subplots(1, 3, figsize=(10, 3.8))
    panels = [(case.start, f"start (innocuous)\n{hasher.name} distance to target: {d_start}"),
              (r.image, f"forged: PSNR {r.psnr_db:.1f} dB, SSIM {r.ssim:.3f}\n"
                        f"{hasher.name} distance to target: {r.distance} (match <= {hasher.default_threshold})"),
              (case.target_image, f"target list entry {case.target_id}\n(the attacker holds only its hash)")]
    for a, (im, title) in zip(ax, panels):
        a.imshow(im)
        a.set_title(title, fontsize=8)
        a.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"path": str(path), "hasher": hasher.name, "distance_forged_to_target": r.distance,
            "distance_start_to_target": int(d_start), "psnr_db": r.psnr_db, "ssim": r.ssim,
            "second_distance": case.second_distance}


def write_collision_figure(path: str | Path, hasher: str = "phash", seed: int = 0, tries: int = 5,
                           budget: int = 400) -> dict:
    """Craft collisions until one succeeds and write it as a demonstration pair (PNG)."""
    h = get_hasher(hasher)
    for case in run_collisions(h, tries, "white-box", budget, seed):
        if case.result.success:
            return render_collision_figure(path, case, h)
    raise ConfigError(f"no collision against {hasher} in {tries} tries (budget {budget}); nothing written")


def collision_quality_ok(case: CollisionCase, floor: QualityFloor = DEFAULT_FLOOR) -> bool:
    """Whether a forged image stays close to its innocuous start (a usable false accusation)."""
    return floor.admits(case.result)
