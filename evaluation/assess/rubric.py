"""The rubric: measured metrics -> criteria -> traffic-light ratings, all thresholds in TOML.

The expert process rated solutions by judgement; here every rating is a rule on a stored
number, so a reader can see why a cell is amber and change the line if they disagree.
"""
from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2eebench.protocols.errors import ConfigError, InputError

DIRECTIONS = ("higher", "lower")
BASES = ("interval", "value", "ci_low", "ci_high")
COMBINES = ("worst",)
NOT_MEASURED = "not measured"
RATED_LABELS = ("measured", "sampled", "bounded")   # labels whose values may earn a colour
MAX_RESOLVE_N = 10 ** 12


@dataclass(frozen=True)
class CellRating:
    """What the rubric makes of one stored measurement."""

    rating: str | None          # a rating name; None = nothing rated (value missing, or label not rated)
    basis: float | None = None  # the number the rating was based on (the worse end of the interval)
    best: str | None = None     # rating of the better end (== rating when conclusive)
    threshold: float | None = None   # the threshold the interval straddles, when inconclusive
    resolve_n: int | None = None     # sample size at the observed value whose interval would resolve it
    resolve_how: str = ""            # how resolve_n was computed
    note: str = ""                   # why the cell is rated as it is, for the reader

    @property
    def inconclusive(self) -> bool:
        return self.rating is not None and self.best is not None and self.best != self.rating


@dataclass(frozen=True)
class MetricRule:
    """How one metric is rated: the worse end of its interval against two thresholds."""

    metric: str
    direction: str = "lower"
    green: float = 0.0
    amber: float = 0.0
    on: str = "interval"
    # rating when the stored measurement says the attack does not apply to the scheme
    # (params "applies": false, e.g. a collision needs list hashes the scheme never hands out)
    not_applicable: str | None = None
    show: bool = False          # shown beside the rated metrics, never rated (e.g. a mitigation's effect)

    def grade(self, x: float, ratings: tuple[str, str, str] = ("green", "amber", "red")) -> str:
        g, a, r = ratings
        if self.direction == "higher":
            return g if x >= self.green else a if x >= self.amber else r
        return g if x <= self.green else a if x <= self.amber else r

    def ends(self, value: float | None, ci_low: float | None, ci_high: float | None) -> tuple[float, float] | None:
        """(worse end, better end) of what is rated; None if there is no number."""
        if _missing(value) and self.on in ("interval", "value"):
            return None
        if self.on == "value" or (self.on == "interval" and (_missing(ci_low) or _missing(ci_high))):
            return float(value), float(value)
        if self.on == "interval":
            lo, hi = float(ci_low), float(ci_high)
            return (lo, hi) if self.direction == "higher" else (hi, lo)
        x = {"ci_low": ci_low, "ci_high": ci_high}[self.on]
        x = value if _missing(x) else x
        return None if _missing(x) else (float(x), float(x))

    def rate(self, value: float | None, ci_low: float | None = None, ci_high: float | None = None,
             ratings: tuple[str, str, str] = ("green", "amber", "red")) -> tuple[str | None, float | None]:
        """The rating of the worse end (None if nothing to rate) and the number it was based on."""
        e = self.ends(value, ci_low, ci_high)
        return (None, None) if e is None else (self.grade(e[0], ratings), e[0])

    def assess(self, value: float | None, ci_low: float | None, ci_high: float | None, n: int,
               unit: str, label: str, ratings: tuple[str, str, str], rated_labels: tuple[str, ...] = RATED_LABELS,
               applies: bool | None = None) -> CellRating:
        """Rate one measurement: the worse end decides; an interval spanning two ratings is
        inconclusive (with the n that would resolve it); unrated labels are shown, never rated."""
        if self.show:
            return CellRating(None, note="shown, not rated")
        e = self.ends(value, ci_low, ci_high)
        if e is None:
            return CellRating(None, note="no value stored")
        if label not in rated_labels:
            return CellRating(None, e[0], note=f"{label}: shown, not rated (only {', '.join(rated_labels)} values are)")
        if self.not_applicable and applies is False:
            return CellRating(self.not_applicable, e[0], self.not_applicable,
                              note="attack does not apply as measured: rated by the rubric's not_applicable rule")
        worse, better = e
        rw, rb = self.grade(worse, ratings), self.grade(better, ratings)
        if rw == rb:
            return CellRating(rw, worse, rb)
        v = float(value) if not _missing(value) else (worse + better) / 2
        thr = self._straddled(worse, better)
        n_res, how = resolve_n(self, v, ci_low, ci_high, n, unit, ratings)
        note = (f"inconclusive: the interval spans {rb} to {rw}; "
                + (f"n = {n_res:,} at the observed value would resolve it ({how})" if n_res
                   else "no sample size resolves it at this value (it sits on a threshold)"))
        return CellRating(rw, worse, rb, thr, n_res, how, note)

    def _straddled(self, a: float, b: float) -> float | None:
        lo, hi = min(a, b), max(a, b)
        inside = [t for t in (self.green, self.amber) if lo <= t <= hi]
        return inside[0] if inside else None


def _wilson_bounds(p: float, n: float) -> tuple[float, float]:
    from e2eebench.evaluation.run.stats import Z95
    z = Z95
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / den
    lo = 0.0 if p <= 0 else max(0.0, centre - half)   # exact ends, as stats.wilson: no rounding residue
    hi = 1.0 if p >= 1 else min(1.0, centre + half)
    return lo, hi


def resolve_n(rule: MetricRule, value: float, ci_low: float | None, ci_high: float | None, n: int, unit: str,
              ratings: tuple[str, str, str]) -> tuple[int | None, str]:
    """Smallest sample size at the observed value whose interval lies inside one rating band.

    Rates (unit "rate", a value in [0, 1]): the Wilson interval at the observed proportion.
    Anything else with an interval: the interval's half-widths shrunk as 1/sqrt(n) (a t- or
    normal interval; approximate for other intervals, and said so)."""
    if _missing(ci_low) or _missing(ci_high) or n < 1:
        return None, ""
    if unit == "rate" and 0.0 <= value <= 1.0:
        how = "Wilson interval at the observed rate"
        def bounds(m: float) -> tuple[float, float]:
            return _wilson_bounds(value, m)
    else:
        how = "interval half-widths shrunk as 1/sqrt(n): approximate"
        dl, dh = value - float(ci_low), float(ci_high) - value
        def bounds(m: float) -> tuple[float, float]:
            s = math.sqrt(n / m)
            return value - dl * s, value + dh * s

    def ok(m: float) -> bool:
        lo, hi = bounds(m)
        return rule.grade(lo, ratings) == rule.grade(hi, ratings)

    lo = max(1, n)
    if ok(lo):          # the model's interval at the stored n already resolves (a stored interval
        return lo, how  # wider than the model's, e.g. an exact bound): more data of this kind settles it
    hi = 2 * lo
    while not ok(hi):
        lo, hi = hi, 2 * hi
        if hi > MAX_RESOLVE_N:
            return None, how
    while hi - lo > 1:   # ok(hi) holds, ok(lo) does not
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi, how


@dataclass(frozen=True)
class Criterion:
    key: str
    title: str
    combine: str
    rules: tuple[MetricRule, ...]

    @property
    def metrics(self) -> list[str]:
        return [r.metric for r in self.rules]

    @property
    def rated(self) -> list[MetricRule]:
        return [r for r in self.rules if not r.show]


@dataclass(frozen=True)
class CriterionRating:
    """A criterion's rating from its cells, and how far the cells support it."""

    rating: str
    measured: int               # rated cells (a rated label and a value)
    total: int                  # cells the rubric rates under this criterion
    best: str | None = None     # the rating if every inconclusive cell resolved to its better end

    @property
    def complete(self) -> bool:
        return self.measured == self.total

    @property
    def inconclusive(self) -> bool:
        return self.best is not None and self.best != self.rating


@dataclass
class Rubric:
    criteria: tuple[Criterion, ...]
    ratings: tuple[str, str, str] = ("green", "amber", "red")
    not_measured: str = "grey"
    labels: dict[str, str] = field(default_factory=dict)
    colours: dict[str, str] = field(default_factory=dict)
    source: str = "built-in"
    digest: str = ""
    rated_labels: tuple[str, ...] = RATED_LABELS

    def criterion(self, key: str) -> Criterion:
        for c in self.criteria:
            if c.key == key:
                return c
        raise ConfigError(f"rubric has no criterion {key!r}")

    def rule(self, metric: str) -> MetricRule:
        for c in self.criteria:
            for r in c.rules:
                if r.metric == metric:
                    return r
        raise ConfigError(f"rubric has no metric {metric!r}")

    def combine(self, criterion: Criterion, ratings: list[str | None]) -> str:
        """Worst measured rating; the not-measured rating when nothing was measured."""
        got = [r for r in ratings if r is not None and r in self.ratings]
        if not got:
            return self.not_measured
        return max(got, key=self.ratings.index)

    def combine_cells(self, criterion: Criterion, cells: list[CellRating]) -> CriterionRating:
        """The criterion from its rated cells only (``cells`` in rule order, shown metrics included).

        Worst of the cells' ratings (each the worse end of its interval). With cells unrated the
        criterion is incomplete and gets no colour better than they could justify: never the best
        rating (a missing cell could be anything), the not-measured colour instead; a worse
        rating stands, since no missing cell can improve a worst-of combination."""
        rated = [c for r, c in zip(criterion.rules, cells) if not r.show and c.rating in self.ratings]
        total = len(criterion.rated)
        if not rated:
            return CriterionRating(self.not_measured, 0, total)
        worst = max((c.rating for c in rated), key=self.ratings.index)
        best = max((c.best or c.rating for c in rated), key=self.ratings.index)
        if len(rated) < total:
            return CriterionRating(self.not_measured if worst == self.ratings[0] else worst, len(rated), total,
                                   None if worst == self.ratings[0] else best)
        return CriterionRating(worst, len(rated), total, best)

    def label(self, rating: str) -> str:
        return self.labels.get(rating, rating)

    def colour(self, rating: str) -> str:
        return self.colours.get(rating, "#ffffff")


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def default_rubric_path() -> Path:
    from e2eebench.evaluation.run.config import builtin_config
    return builtin_config("rubric")


def load_rubric(path: str | Path | None = None) -> Rubric:
    """Load and validate a rubric file (the built-in one if ``path`` is None)."""
    p = Path(path) if path is not None else default_rubric_path()
    try:
        raw_bytes = p.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"rubric file not found: {p}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"rubric {p.name} is not valid TOML: {e}") from None
    rub = rubric_from_dict(raw, p.name)
    rub.source = "built-in" if path is None else str(p)
    rub.digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
    return rub


def _num(where: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(float(v)):
        raise ConfigError(f"{where}: {key} must be a number, got {v!r}")
    return float(v)


def rubric_from_dict(raw: dict[str, Any], where: str = "rubric") -> Rubric:
    """Validate a parsed rubric; every error names the offending key."""
    for k in raw:
        if k not in ("scale", "criteria"):
            raise ConfigError(f"{where}: unknown section [{k}] (known: scale, criteria)")
    scale = raw.get("scale", {})
    if not isinstance(scale, dict):
        raise ConfigError(f"{where}: [scale] must be a table")
    for k in scale:
        if k not in ("ratings", "not_measured", "labels", "colours", "rated_labels"):
            raise ConfigError(f"{where}: unknown key scale.{k}")
    ratings = scale.get("ratings", ["green", "amber", "red"])
    if (not isinstance(ratings, list) or len(ratings) != 3 or len(set(ratings)) != 3
            or not all(isinstance(r, str) and r for r in ratings)):
        raise ConfigError(f"{where}: scale.ratings must list three distinct names, best first")
    nm = scale.get("not_measured", "grey")
    if not isinstance(nm, str) or nm in ratings:
        raise ConfigError(f"{where}: scale.not_measured must be a name distinct from the ratings")
    labels, colours = scale.get("labels", {}), scale.get("colours", {})
    for name, tab in (("labels", labels), ("colours", colours)):
        if not isinstance(tab, dict):
            raise ConfigError(f"{where}: scale.{name} must be a table")
        for k, v in tab.items():
            if k not in (*ratings, nm):
                raise ConfigError(f"{where}: scale.{name}.{k} is not a rating")
            if not isinstance(v, str):
                raise ConfigError(f"{where}: scale.{name}.{k} must be a string")
            if name == "colours" and not (len(v) == 7 and v.startswith("#")
                                          and all(c in "0123456789abcdefABCDEF" for c in v[1:])):
                raise ConfigError(f"{where}: scale.colours.{k} must be a #rrggbb colour, got {v!r}")
    rated_labels = scale.get("rated_labels", list(RATED_LABELS))
    if (not isinstance(rated_labels, list) or not rated_labels
            or not all(isinstance(x, str) and x for x in rated_labels)):
        raise ConfigError(f"{where}: scale.rated_labels must list the labels whose values may be rated")
    crit_raw = raw.get("criteria")
    if not isinstance(crit_raw, dict) or not crit_raw:
        raise ConfigError(f"{where}: [criteria] must define at least one criterion")
    criteria, seen = [], set()
    for ck, c in crit_raw.items():
        if not isinstance(c, dict):
            raise ConfigError(f"{where}: criteria.{ck} must be a table")
        for k in c:
            if k not in ("title", "combine", "metrics"):
                raise ConfigError(f"{where}: unknown key criteria.{ck}.{k} (known: title, combine, metrics)")
        title = c.get("title", ck)
        if not isinstance(title, str):
            raise ConfigError(f"{where}: criteria.{ck}.title must be a string")
        combine = c.get("combine", "worst")
        if combine not in COMBINES:
            raise ConfigError(f"{where}: criteria.{ck}.combine must be one of {', '.join(COMBINES)}, got {combine!r}")
        ms = c.get("metrics", {})
        if not isinstance(ms, dict) or not ms:
            raise ConfigError(f"{where}: criteria.{ck}.metrics must define at least one metric")
        rules = []
        for mk, m in ms.items():
            key = f"criteria.{ck}.metrics.{mk}"
            if not isinstance(m, dict):
                raise ConfigError(f"{where}: {key} must be a table")
            if mk in seen:
                raise ConfigError(f"{where}: {key}: metric rated under two criteria")
            seen.add(mk)
            for k in m:
                if k not in ("direction", "green", "amber", "on", "not_applicable", "show"):
                    raise ConfigError(f"{where}: unknown key {key}.{k} (known: direction, green, amber, on, not_applicable, show)")
            show = m.get("show", False)
            if not isinstance(show, bool):
                raise ConfigError(f"{where}: {key}.show must be true or false")
            if show:
                if set(m) - {"show"}:
                    raise ConfigError(f"{where}: {key}: a shown metric takes no thresholds (only show = true)")
                rules.append(MetricRule(mk, show=True))
                continue
            for k in ("direction", "green", "amber"):
                if k not in m:
                    raise ConfigError(f"{where}: {key}.{k} is missing")
            d = m["direction"]
            if d not in DIRECTIONS:
                raise ConfigError(f"{where}: {key}.direction must be 'higher' or 'lower', got {d!r}")
            g, a = _num(where, f"{key}.green", m["green"]), _num(where, f"{key}.amber", m["amber"])
            if (d == "higher" and g < a) or (d == "lower" and g > a):
                raise ConfigError(f"{where}: {key}: green {g:g} must be at least as strict as amber {a:g}")
            on = m.get("on", "interval")
            if on not in BASES:
                raise ConfigError(f"{where}: {key}.on must be one of {', '.join(BASES)}, got {on!r}")
            na = m.get("not_applicable")
            if na is not None and na not in ratings:
                raise ConfigError(f"{where}: {key}.not_applicable must be one of {', '.join(ratings)}, got {na!r}")
            rules.append(MetricRule(mk, d, g, a, on, na))
        if not any(not r.show for r in rules):
            raise ConfigError(f"{where}: criteria.{ck}.metrics must rate at least one metric")
        criteria.append(Criterion(ck, title, combine, tuple(rules)))
    return Rubric(tuple(criteria), tuple(ratings), nm, dict(labels), dict(colours),
                  rated_labels=tuple(rated_labels))
