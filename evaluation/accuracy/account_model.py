"""Account-level false-flag model: from per-image rates to "is an innocent account flagged?".

An account sends ``m`` images a year; each benign image falsely matches the list with
probability ``p`` (independently: *modelled*), and the provider acts once an account reaches
``t`` matches (t = 1: report on first match; Apple's tPSI-AD launched with t = 30). Then the
innocent account is flagged with probability P[Binomial(m, p) >= t].

That tail is computed in log space (:func:`log_binom_tail`): the largest term in the range,
with log C(m, k) from the exact integer ``math.comb``, times a sum of term ratios, so nothing
underflows even at 1e-300 and the relative error is a few ulp times |ln P| (the floor of any
float64 log-space result). :func:`binom_tail_exact` gives the exact rational answer with
integer arithmetic (``float()`` of it is correctly rounded) for checks and small cases.
:func:`monte_carlo_tail` simulates per-message Bernoulli draws with a seeded generator and
gives a Wilson interval the analytic value must fall in wherever Monte Carlo can reach.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from e2eebench.evaluation.run.stats import Estimate, upper_bound_zero, wilson
from e2eebench.evaluation.run.store import Measurement
from e2eebench.protocols.errors import ConfigError

APPLE_T = 30                         # Apple's launch threshold (matches per account)
APPLE_CLAIM = 1e-12                  # "1 in a trillion" per account per year (claimed)
MESSAGES_PER_YEAR = 365 * 20         # modelled default: 20 images a day


def _check(m: int, p: float, t: int) -> None:
    if not isinstance(m, (int, np.integer)) or m < 0:
        raise ConfigError(f"messages must be an integer >= 0, got {m!r}")
    if not isinstance(t, (int, np.integer)):
        raise ConfigError(f"threshold t must be an integer, got {t!r}")
    if not (0.0 <= float(p) <= 1.0) or math.isnan(float(p)):
        raise ConfigError(f"probability must be in [0, 1], got {p!r}")


def _log_term(m: int, k: int, p: float) -> float:
    """ln [C(m, k) p^k (1-p)^(m-k)] with C(m, k) exact."""
    return math.log(math.comb(m, k)) + k * math.log(p) + (m - k) * math.log1p(-p)


_EXACT_BITS = 200_000     # exact (1-p)^(m-k) while it stays this small (fast); else exp(log1p)


def _exact_term(m: int, k: int, p: float) -> float | None:
    """C(m, k) p^k (1-p)^(m-k) to a few ulp (None outside the float range).

    C(m, k) p^k is exact (integers). (1-p)^(m-k) is exp((m-k) log1p(-p)) when that exponent is
    small (relative error ~ ulp), else exact integers while they stay affordable.
    """
    fp = Fraction(p)
    a, d = fp.numerator, fp.denominator
    lq = (m - k) * math.log1p(-p)
    try:
        if lq > -1.0 or (m - k) * d.bit_length() > _EXACT_BITS:
            v = float(Fraction(math.comb(m, k) * a ** k, d ** k)) * math.exp(lq)
        else:
            v = float(Fraction(math.comb(m, k) * a ** k * (d - a) ** (m - k), d ** m))
    except OverflowError:
        return None
    return v if v > 0.0 and math.isfinite(v) else None


def _log_ratio_sum(m: int, p: float, start: int, stop: int, step: int) -> float:
    """ln of sum over k = start, start+step, ... (to stop inclusive) of T(k) / T(start),
    for a run of terms that decreases away from ``start`` (so the sum converges fast)."""
    q = 1.0 - p
    total, cur = 1.0, 1.0
    k = start
    chunk = 1024
    while (k < stop) if step > 0 else (k > stop):
        if step > 0:
            ks = np.arange(k, min(stop, k + chunk), dtype=np.float64)
            ratios = (m - ks) / (ks + 1.0) * (p / q)          # T(k+1) / T(k)
        else:
            ks = np.arange(k, max(stop, k - chunk), -1, dtype=np.float64)
            ratios = ks / (m - ks + 1.0) * (q / p)            # T(k-1) / T(k)
        terms = cur * np.cumprod(ratios)
        total += float(terms.sum())
        cur = float(terms[-1])
        k += step * len(ks)
        if cur < total * 1e-18:
            break
    return math.log(total)


def log_binom_tail(m: int, p: float, t: int) -> float:
    """ln P[Binomial(m, p) >= t], accurate in relative terms without underflow."""
    _check(m, p, t)
    p = float(p)
    if t <= 0:
        return 0.0
    if t > m or p == 0.0:
        return -math.inf
    if p == 1.0:
        return 0.0
    if t == 1:                                   # 1 - (1-p)^m, without cancellation
        return math.log(-math.expm1(m * math.log1p(-p)))
    if t > m * p:                                # upper tail: terms fall from k = t on
        return _log_term(m, t, p) + _log_ratio_sum(m, p, t, m, +1)
    s = t - 1                                    # s < m p: P = 1 - P[X <= s], P[X <= s] <= 1/2
    low = _log_term(m, s, p) + _log_ratio_sum(m, p, s, 0, -1)
    return math.log(-math.expm1(low))


def binom_tail(m: int, p: float, t: int) -> float:
    """P[Binomial(m, p) >= t] as a float (0.0 only below the float range; use the log then).

    Where the anchor term is representable it is computed exactly (integers) and only the
    ratio sum is in floating point, so the relative error is a few ulp (~1e-15), not |ln P| ulp.
    """
    _check(m, p, t)
    p = float(p)
    if t <= 1 or t > m or p in (0.0, 1.0) or t <= m * p:
        return math.exp(log_binom_tail(m, p, t))
    anchor = _exact_term(m, t, p)
    if anchor is None:
        return math.exp(log_binom_tail(m, p, t))
    return min(1.0, anchor * math.exp(_log_ratio_sum(m, p, t, m, +1)))


def binom_tail_exact(m: int, p: float | Fraction, t: int) -> Fraction:
    """The exact tail for a rational p (every float is one), by integer arithmetic."""
    _check(m, float(p), t)
    if t <= 0:
        return Fraction(1)
    if t > m:
        return Fraction(0)
    fp = Fraction(p)
    a, d = fp.numerator, fp.denominator
    b = d - a
    if t - 1 <= m - t:                           # fewer terms below t: 1 - sum_{k < t}
        s, bp = 0, b ** (m - t + 1)
        for k in range(t - 1, -1, -1):           # b^(m-k) grows as k falls
            s += math.comb(m, k) * a ** k * bp
            bp *= b
        return 1 - Fraction(s, d ** m)
    s, bp = 0, 1
    for k in range(m, t - 1, -1):
        s += math.comb(m, k) * a ** k * bp
        bp *= b
    return Fraction(s, d ** m)


def image_fpr(pair_fpr: float, list_size: int) -> float:
    """Per-image FPR against a list of ``list_size`` entries, entries independent (modelled):
    1 - (1 - pair_fpr)^L, computed without cancellation."""
    if list_size < 0:
        raise ConfigError(f"list size must be >= 0, got {list_size}")
    if pair_fpr >= 1.0:
        return 1.0
    return -math.expm1(list_size * math.log1p(-pair_fpr))


@dataclass(frozen=True)
class AccountModel:
    """Per-image rates + messages a year + reporting threshold -> account-level probabilities."""

    image_fpr: float
    messages: int = MESSAGES_PER_YEAR
    t: int = 1
    image_tpr: float = 1.0

    def log10_innocent_flag_prob(self) -> float:
        return log_binom_tail(self.messages, self.image_fpr, self.t) / math.log(10)

    def innocent_flag_prob(self) -> float:
        return binom_tail(self.messages, self.image_fpr, self.t)

    def offender_flag_prob(self, k: int) -> float:
        """An offender whose year holds ``k`` known items among ``messages`` images: flagged when
        true matches (Binomial(k, tpr)) plus false ones (Binomial(m - k, fpr)) reach t."""
        if not 0 <= k <= self.messages:
            raise ConfigError(f"known items k must be in 0..{self.messages}, got {k}")
        rest = self.messages - k
        total = 0.0
        for j in range(0, k + 1):
            pj = math.comb(k, j) * self.image_tpr ** j * (1 - self.image_tpr) ** (k - j)
            if pj:
                total += pj * binom_tail(rest, self.image_fpr, self.t - j)
        return min(1.0, total)


def monte_carlo_tail(m: int, p: float, t: int, n_accounts: int, seed: int = 0, *, known: int = 0,
                     tpr: float = 1.0, chunk_draws: int = 4_000_000) -> Estimate:
    """Simulate ``n_accounts`` accounts message by message (Bernoulli draws; the first ``known``
    messages match with ``tpr``, the rest with ``p``) and count those reaching t; Wilson interval."""
    _check(m, p, t)
    if n_accounts < 1:
        raise ConfigError(f"Monte Carlo needs at least one account, got {n_accounts}")
    rng = np.random.default_rng(seed)
    per = max(1, chunk_draws // max(1, m))
    flagged = 0
    for start in range(0, n_accounts, per):
        c = min(per, n_accounts - start)
        counts = (rng.random((c, m - known)) < p).sum(axis=1)
        if known:
            counts += (rng.random((c, known)) < tpr).sum(axis=1)
        flagged += int((counts >= t).sum())
    return wilson(flagged, n_accounts)


def account_flag_measurement(scheme: str, false_pairs: int, pairs: int, *, list_size: int, messages: int, t: int,
                             params: dict) -> Measurement:
    """``account_false_flag_prob`` from a measured pair FPR (k of n): value at the estimate, interval
    from the pair FPR's Wilson interval (its one-sided 95% bound when k = 0). Modelled."""
    e = wilson(false_pairs, pairs)
    hi_pair = upper_bound_zero(pairs) if false_pairs == 0 else e.ci_high
    def prob(pair: float) -> float:
        return binom_tail(messages, image_fpr(pair, list_size), t)
    v = prob(e.value) if pairs else None
    lo = prob(e.ci_low) if pairs else None
    hi = prob(hi_pair) if pairs else None
    lg = log_binom_tail(messages, image_fpr(hi_pair, list_size), t) / math.log(10) if pairs else None
    text = f"modelled: {messages} images/year, t={t}, list {list_size}, independent entries; "
    if not pairs:
        text += "no pairs measured: nothing to model from"
    else:
        text += f"upper end = 10^{lg:.1f}" + ("; 0 false pairs observed: the upper end is a bound" if not false_pairs else "")
    return Measurement(scheme, "account_false_flag_prob", v, "probability", pairs, lo, hi,
                       params | {"messages_per_year": messages, "t": t, "list_size": list_size}, text, "modelled")


def count_distinguisher_advantage(n_images: int, synthetic_rate: float, k_real: int) -> float:
    """What tpsi-ad's synthetic vouchers leave of an account's match count below the threshold.

    Below t the provider sees only how many of an account's n vouchers opened. Each voucher is
    synthetic (and opens) with probability p; a real match opens either way. So the count is
    Binomial(n, p) for a benign account and k + Binomial(n - k, p) for one with k real matches.
    The total-variation distance between the two is the best advantage any test on the count
    can have in telling them apart (0 = indistinguishable, 1 = always told apart). Modelled:
    it assumes the device draws synthetic vouchers independently with probability p, which
    ``tests/test_psi.py`` checks against the protocol's real voucher counts.
    """
    from scipy.stats import binom
    if not 0 <= synthetic_rate <= 1 or not 0 <= k_real <= n_images:
        raise ConfigError(f"need 0 <= p <= 1 and 0 <= k <= n, got p={synthetic_rate}, k={k_real}, n={n_images}")
    x = np.arange(n_images + 1)
    benign = binom.pmf(x, n_images, synthetic_rate)
    real = np.where(x >= k_real, binom.pmf(x - k_real, n_images - k_real, synthetic_rate), 0.0)
    return float(0.5 * np.abs(benign - real).sum())


# --------------------------------------------------------------------------- correlated resends


def zipf_popularity(n_images: int, a: float) -> np.ndarray:
    """The workload's benign popularity: p_j ∝ j^-a over n_images distinct images."""
    if n_images < 1 or a <= 1:
        raise ConfigError(f"need n_images >= 1 and zipf exponent a > 1, got {n_images}, {a}")
    p = np.arange(1, n_images + 1, dtype=float) ** -a
    return p / p.sum()


def _tail_vec(m: int, w: np.ndarray, t: int) -> np.ndarray:
    from scipy.stats import binom
    return binom.sf(t - 1, m, np.clip(w, 0.0, 1.0))


def resend_flag_prob(q: float, pop: np.ndarray, m: int, t: int, seed: int = 0, subsets: int = 200) -> float:
    """P(an innocent account is flagged) when its m sends a year are draws from ``pop`` (popular
    images resent, as the workload generates them) and each distinct image falsely matches with
    probability q, independently. Given the set F of falsely matching images, the account's
    match count is Binomial(m, pop(F)); so P = sum_k P(|F| = k) E[tail(pop(F)) | |F| = k], with
    |F| ~ Binomial(D, q) exactly, k = 1 exactly over every image, and k >= 2 averaged over a
    seeded sample of ``subsets`` random k-subsets. Modelled."""
    from scipy.stats import binom
    _check(m, q, t)
    D = len(pop)
    if q == 0.0 or t > m:
        return 0.0
    if t <= 0:
        return 1.0
    rng = np.random.default_rng([seed, 0xACC])
    lo, hi = (int(v) for v in binom.interval(1 - 1e-12, D, q))
    total = 0.0
    for k in range(max(1, lo), min(D, max(hi, 1)) + 1):
        pk = float(binom.pmf(k, D, q))
        if pk == 0.0:
            continue
        if k == 1:
            e = float(_tail_vec(m, pop, t).mean())
        elif k == D:
            e = float(_tail_vec(m, np.array([pop.sum()]), t)[0])
        else:
            if 4 * k < D:   # small subsets: draw each without replacement directly
                w = np.array([pop[rng.choice(D, k, replace=False)].sum() for _ in range(subsets)])
            else:
                w = pop[np.argpartition(rng.random((subsets, D)), k - 1, axis=1)[:, :k]].sum(axis=1)
            e = float(_tail_vec(m, w, t).mean())
        total += pk * e
    return min(1.0, total)


def resend_monte_carlo(q: float, pop: np.ndarray, m: int, t: int, worlds: int, accounts: int,
                       seed: int = 0) -> Estimate:
    """The same model simulated directly: per world draw F (each image with probability q), then
    ``accounts`` accounts each send m images from ``pop``; count accounts reaching t. The n of
    the interval is the number of worlds (accounts within a world share F)."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    shares = []
    for _ in range(worlds):
        F = rng.random(len(pop)) < q
        counts = rng.multinomial(m, pop, size=accounts)[:, F].sum(axis=1)
        shares.append(float((counts >= t).mean()))
    return wilson(sum(shares), worlds)


def _probe_q(pop: np.ndarray, m: int, t: int, target: float = 0.3) -> float:
    """A per-image FPR at which the model's flag probability is near ``target`` (bisection in log
    q), where a Monte Carlo of a few hundred worlds can see it."""
    lo, hi = 1e-9, 1.0
    for _ in range(24):
        mid = math.sqrt(lo * hi)
        if resend_flag_prob(mid, pop, m, t, subsets=100) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def resend_model_check(pop: np.ndarray, m: int, t: int, seed: int = 0, worlds: int = 400,
                       accounts: int = 20, model=resend_flag_prob) -> tuple[bool, str]:
    """Check ``model`` against the direct simulation at a probe FPR where simulation can see it:
    passes when the model's value lies in the simulation's Wilson interval (widened by 3 x the
    model's own subset-sampling spread). Can fail: hand it a wrong ``model`` and it does."""
    q = _probe_q(pop, m, t)
    v = model(q, pop, m, t, seed=seed)
    mc = resend_monte_carlo(q, pop, m, t, worlds, accounts, seed)
    slack = 0.01
    ok = mc.ci_low - slack <= v <= mc.ci_high + slack
    return ok, (f"check at image FPR {q:.3g}: model {v:.4f}, simulation {mc.value:.4f} "
                f"[{mc.ci_low:.4f}, {mc.ci_high:.4f}] over {worlds} worlds x {accounts} accounts")


@lru_cache(maxsize=32)
def _cached_check(pop: tuple, m: int, t: int, seed: int) -> tuple[bool, str]:
    return resend_model_check(np.asarray(pop), m, t, seed)


def source_pair_counts(source_min: np.ndarray, valid: np.ndarray, tau: int) -> tuple[int, int]:
    """(source pairs whose closest versions are within tau, source pairs): a pair of source
    images counts once however many of their versions (copies) are compared."""
    iu = np.triu_indices(source_min.shape[0], 1)
    ok = valid[iu]
    return int((source_min[iu][ok] <= tau).sum()), int(ok.sum())


def account_measurements(scheme: str, false_pairs: int, pairs: int, *, list_size: int, list_source: str,
                         messages: int, t: int, pop: np.ndarray, params: dict, seed: int = 0) -> list[Measurement]:
    """``account_false_flag_prob`` under correlated resends (slice all) and under the old
    independent-images assumption (slice "independent images"), with the resend model's
    Monte Carlo check as its own row. When no false source pair was seen, the figure is the
    bound at the pair FPR's one-sided 95 % upper end (label "bounded"), not 0."""
    base = params | {"messages_per_year": messages, "t": t, "list_size": list_size, "list_size_source": list_source,
                     "pair_unit": "source pair", "benign_pool": len(pop)}
    if not pairs:
        return [Measurement(scheme, "account_false_flag_prob", None, "probability", 0, params=base | {"slice": "all"},
                            text="no source pairs measured: nothing to model from", label="modelled")]
    e = wilson(false_pairs, pairs)
    hi_pair = upper_bound_zero(pairs) if false_pairs == 0 else e.ci_high
    ok, check_text = _cached_check(tuple(np.round(pop, 15)), messages, t, seed)
    out = [Measurement(scheme, "account_model_check", float(ok), "bool", 1, params=base,
                       text=("passed: " if ok else "FAILED: ") + check_text, label="modelled")]
    for sl, f in (("all", lambda q: resend_flag_prob(q, pop, messages, t, seed)),
                  ("independent images", lambda q: binom_tail(messages, q, t))):
        q_hi, q_v, q_lo = (image_fpr(x, list_size) for x in (hi_pair, e.value, e.ci_low))
        hi = f(q_hi)
        p = base | {"slice": sl, "image_fpr_upper": q_hi}
        what = ("resends correlated as the workload generates them (Zipf popularity over "
                f"{len(pop)} benign images)" if sl == "all" else "every image independent (no resends)")
        text = f"{messages} images/year, t={t}, list {list_size} ({list_source}), {what}, {pairs} source pairs"
        if sl == "all" and not ok:
            out.append(Measurement(scheme, "account_false_flag_prob", None, "probability", pairs, params=p,
                                   text="withheld: the resend model failed its Monte Carlo check", label="modelled"))
            continue
        if false_pairs == 0:
            out.append(Measurement(scheme, "account_false_flag_prob", hi, "probability", pairs, 0.0, hi, p,
                                   text + f"; 0 false source pairs: bounded, <= {hi:.3g}", "bounded"))
        else:
            out.append(Measurement(scheme, "account_false_flag_prob", f(q_v), "probability", pairs, f(q_lo), hi, p,
                                   text, "modelled"))
    return out
