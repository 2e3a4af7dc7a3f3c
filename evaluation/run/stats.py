"""Intervals for every reported number: Wilson for rates, normal/t for means."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int


def wilson(k: int, n: int, z: float = Z95) -> Estimate:
    """Wilson score interval; n = 0 gives NaN with no interval (nothing was measured)."""
    if n <= 0:
        return Estimate(float("nan"), None, None, 0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, centre - half)   # exact ends: no rounding residue
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, lo, hi, n)


def mean_ci(values, conf: float = 0.95) -> Estimate:
    x = np.asarray(list(values), dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(float("nan"), None, None, 0)
    m = float(x.mean())
    if n == 1:
        return Estimate(m, None, None, 1)
    se = float(x.std(ddof=1)) / math.sqrt(n)
    h = float(_st.t.ppf(0.5 + conf / 2, n - 1)) * se
    return Estimate(m, m - h, m + h, n)


def upper_bound_zero(n: int, conf: float = 0.95) -> float:
    """One-sided upper bound on a rate when 0 of n events were seen (exact: 1 - (1-conf)^(1/n))."""
    return 1.0 - (1.0 - conf) ** (1.0 / n) if n > 0 else 1.0
