"""The account-level model: binomial tail vs exact rational arithmetic and vs Monte Carlo."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from e2eebench.evaluation.accuracy.account_model import (AccountModel, binom_tail, binom_tail_exact, image_fpr,
                                                log_binom_tail, monte_carlo_tail)
from e2eebench.protocols.errors import ConfigError


def fraction_tail(m: int, p: Fraction, t: int) -> Fraction:
    """Textbook definition, term by term with Fractions (independent of the module's code)."""
    q = 1 - p
    return sum((Fraction(math.comb(m, k)) * p ** k * q ** (m - k) for k in range(max(t, 0), m + 1)), Fraction(0))


CASES = [(10, 0.3, 3), (50, 0.01, 5), (50, 0.3, 20), (50, 0.3, 10), (40, 0.9, 40), (200, 1e-4, 3),
         (300, 0.015625, 1), (120, 1e-6, 30), (64, 0.5, 50), (7, 0.999, 2)]


@pytest.mark.parametrize("m,p,t", CASES)
def test_tail_matches_exact_rational(m, p, t):
    exact = fraction_tail(m, Fraction(p), t)
    assert binom_tail_exact(m, p, t) == exact
    got = binom_tail(m, p, t)
    assert got == pytest.approx(float(exact), rel=2e-15, abs=0)
    assert log_binom_tail(m, p, t) == pytest.approx(math.log(exact.numerator) - math.log(exact.denominator),
                                                   rel=1e-12)


def test_deep_tail_does_not_underflow_in_log_space():
    # P ~ 1e-400: not a float, but its log is; compare with the exact rational's log.
    m, p, t = 60, 1e-14, 30
    exact = fraction_tail(m, Fraction(p), t)
    lg = log_binom_tail(m, p, t)
    ref = math.log(exact.numerator) - math.log(exact.denominator)
    assert lg < -900 and lg == pytest.approx(ref, rel=1e-13)


def test_edge_cases():
    assert binom_tail(10, 0.2, 0) == 1.0
    assert binom_tail(10, 0.2, 11) == 0.0
    assert binom_tail(10, 0.0, 1) == 0.0
    assert binom_tail(10, 1.0, 10) == 1.0
    assert binom_tail(1000, 1e-9, 1) == pytest.approx(1 - (1 - 1e-9) ** 1000, rel=1e-6)
    with pytest.raises(ConfigError):
        binom_tail(10, 1.5, 1)
    with pytest.raises(ConfigError):
        binom_tail(-1, 0.5, 1)


def test_image_fpr_from_pairs():
    assert image_fpr(1e-7, 1) == pytest.approx(1e-7, rel=1e-12)
    assert image_fpr(1e-7, 10**6) == pytest.approx(1 - (1 - 1e-7) ** 10**6, rel=1e-9)
    assert image_fpr(0.0, 10**6) == 0.0


@pytest.mark.parametrize("m,p,t,seed", [(365, 0.01, 5, 1), (400, 0.002, 2, 2), (200, 0.05, 15, 3)])
def test_tail_agrees_with_monte_carlo(m, p, t, seed):
    e = monte_carlo_tail(m, p, t, 20_000, seed)
    assert e.ci_low <= binom_tail(m, p, t) <= e.ci_high


def test_offender_probability_matches_convolution_and_monte_carlo():
    model = AccountModel(image_fpr=0.0009765625, messages=300, t=5, image_tpr=0.625)
    k = 8
    # independent derivation: P[A + B >= t], A ~ Bin(k, 5/8), B ~ Bin(m - k, 1/1024), exact rationals
    r, f = Fraction(5, 8), Fraction(1, 1024)
    exact = sum(Fraction(math.comb(k, j)) * r ** j * (1 - r) ** (k - j) * fraction_tail(300 - k, f, 5 - j)
                for j in range(k + 1))
    assert model.offender_flag_prob(k) == pytest.approx(float(exact), rel=1e-12)
    e = monte_carlo_tail(300, 0.0009765625, 5, 20_000, seed=4, known=k, tpr=0.625)
    assert e.ci_low <= model.offender_flag_prob(k) <= e.ci_high


def test_apple_setting_is_monotone_and_tiny():
    # t = 30 with a per-image FPR of 1e-6 over 7300 images: far below Apple's claimed 1e-12
    p30 = AccountModel(1e-6, 7300, 30).innocent_flag_prob()
    p1 = AccountModel(1e-6, 7300, 1).innocent_flag_prob()
    assert 0 < p30 < 1e-12 < p1
    assert AccountModel(2e-6, 7300, 30).innocent_flag_prob() > p30


def test_account_flag_measurement_without_pairs_has_no_value():
    """No measured pairs: no value, no interval, n = 0, and a text that says why (no crash)."""
    from e2eebench.evaluation.accuracy.account_model import account_flag_measurement
    m = account_flag_measurement("s", 0, 0, list_size=10, messages=100, t=1, params={})
    assert m.value is None and m.ci_low is None and m.ci_high is None and m.n == 0
    assert m.label == "modelled" and "no pairs" in m.text
