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
BASES = ("value", "ci_low", "ci_high")
COMBINES = ("worst",)
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class MetricRule:
    """How one metric is rated: compare ``on`` (value or a CI bound) with two thresholds."""

    metric: str
    direction: str
    green: float
    amber: float
    on: str = "value"
    # rating when the stored measurement says the attack does not apply to the scheme
    # (params "applies": false, e.g. a collision needs list hashes the scheme never hands out)
    not_applicable: str | None = None

    def rate(self, value: float | None, ci_low: float | None = None, ci_high: float | None = None,
             ratings: tuple[str, str, str] = ("green", "amber", "red")) -> tuple[str | None, float | None]:
        """The rating (None if nothing to rate) and the number it was based on."""
        x = {"value": value, "ci_low": ci_low, "ci_high": ci_high}[self.on]
        if _missing(x):
            x = value
        if _missing(x):
            return None, None
        x = float(x)
        g, a, r = ratings
        if self.direction == "higher":
            return (g if x >= self.green else a if x >= self.amber else r), x
        return (g if x <= self.green else a if x <= self.amber else r), x


@dataclass(frozen=True)
class Criterion:
    key: str
    title: str
    combine: str
    rules: tuple[MetricRule, ...]

    @property
    def metrics(self) -> list[str]:
        return [r.metric for r in self.rules]


@dataclass
class Rubric:
    criteria: tuple[Criterion, ...]
    ratings: tuple[str, str, str] = ("green", "amber", "red")
    not_measured: str = "grey"
    labels: dict[str, str] = field(default_factory=dict)
    colours: dict[str, str] = field(default_factory=dict)
    source: str = "built-in"
    digest: str = ""

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
        if k not in ("ratings", "not_measured", "labels", "colours"):
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
                if k not in ("direction", "green", "amber", "on", "not_applicable"):
                    raise ConfigError(f"{where}: unknown key {key}.{k} (known: direction, green, amber, on, not_applicable)")
            for k in ("direction", "green", "amber"):
                if k not in m:
                    raise ConfigError(f"{where}: {key}.{k} is missing")
            d = m["direction"]
            if d not in DIRECTIONS:
                raise ConfigError(f"{where}: {key}.direction must be 'higher' or 'lower', got {d!r}")
            g, a = _num(where, f"{key}.green", m["green"]), _num(where, f"{key}.amber", m["amber"])
            if (d == "higher" and g < a) or (d == "lower" and g > a):
                raise ConfigError(f"{where}: {key}: green {g:g} must be at least as strict as amber {a:g}")
            on = m.get("on", "value")
            if on not in BASES:
                raise ConfigError(f"{where}: {key}.on must be one of {', '.join(BASES)}, got {on!r}")
            na = m.get("not_applicable")
            if na is not None and na not in ratings:
                raise ConfigError(f"{where}: {key}.not_applicable must be one of {', '.join(ratings)}, got {na!r}")
            rules.append(MetricRule(mk, d, g, a, on, na))
        criteria.append(Criterion(ck, title, combine, tuple(rules)))
    return Rubric(tuple(criteria), tuple(ratings), nm, dict(labels), dict(colours))
