"""Intervals: Wilson against an independent closed form, and the zero-event bound."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from e2eebench.evaluation.run.stats import mean_ci, upper_bound_zero, wilson


@pytest.mark.parametrize("k,n", [(0, 3), (3, 3), (1, 10), (24, 181), (500, 1000)])
def test_wilson_matches_closed_form(k, n):
    z = stats.norm.ppf(0.975)
    p = k / n
    # Wilson (1927): roots of (p - x)^2 = z^2 x (1 - x) / n
    a = 1 + z * z / n
    b = -(2 * p + z * z / n)
    c = p * p
    disc = math.sqrt(b * b - 4 * a * c)
    lo, hi = (-b - disc) / (2 * a), (-b + disc) / (2 * a)
    e = wilson(k, n)
    assert e.ci_low == pytest.approx(max(lo, 0.0), abs=1e-12)
    assert e.ci_high == pytest.approx(min(hi, 1.0), abs=1e-12)
    assert e.ci_low <= e.value <= e.ci_high


def test_ends_are_exact():
    assert wilson(0, 3).ci_low == 0.0 and wilson(3, 3).ci_high == 1.0
    assert math.isnan(wilson(0, 0).value)


def test_zero_event_bound_and_mean():
    n = 1000
    assert (1 - upper_bound_zero(n)) ** n == pytest.approx(0.05)
    e = mean_ci([1.0, 2.0, 3.0])
    assert e.value == 2.0 and e.ci_low < 2.0 < e.ci_high
