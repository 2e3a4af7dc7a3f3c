"""The assessment table: one row per scheme, per criterion the stored figures and their rating.

Built only from a stored run and a rubric, so every number in it is a stored measurement
(value, interval, unit, n) and every colour follows a threshold written in the rubric.
Schemes the design plans but nobody has implemented yet appear as rows without numbers.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from e2eebench.protocols.framework import EU_CATEGORIES
from e2eebench.evaluation.assess.rubric import CellRating, Criterion, Rubric, load_rubric
from e2eebench.evaluation.run.store import ResultStore

# The design's roster (DESIGN.md, "The schemes"), in its order: a name listed here but not
# registered is shown as "not implemented", never with numbers. Metadata comes from the registry.
PLANNED_SCHEMES: tuple[str, ...] = (
    "server-side", "e2ee-no-detection", "exceptional-access", "user-report-franking", "on-device-list",
    "on-device-bloom", "on-device-lsh-bloom", "hash-upload",
    "partial-hash", "psi-client-learns", "psi-ad", "tpsi-ad", "psi-ad-lsh", "he-hamming",
    "he-cosine", "two-server-mpc", "enclave",
)
EU_CATEGORY_TITLES = EU_CATEGORIES

MEASURED, MODELLED, NOT_RUN, NOT_IMPLEMENTED = "measured", "modelled", "not in this run", "not implemented"


@dataclass
class MetricCell:
    """One stored measurement as it enters the table, with its rating."""

    metric: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = ""
    n: int = 0
    rating: str = "grey"
    label: str = ""            # measured / modelled / extrapolated / declared; "" = not measured
    text: str | None = None
    params: str = ""           # the stored params JSON: the key back to the measurement
    basis: float | None = None  # the number the rating was based on (the worse end of the interval)
    candidates: int = 0        # stored rows that could have filled this cell
    best: str | None = None    # rating of the interval's better end (differs when inconclusive)
    resolve_n: int | None = None  # sample size at the observed value that would make it conclusive
    note: str = ""             # why the cell is rated (or not) as it is
    shown: bool = False        # a metric shown beside the rated ones, never rated
    run_id: str = ""           # the stored run the figure came from

    @property
    def measured(self) -> bool:
        """A stored row filled the cell (whatever its label)."""
        return self.label != ""

    @property
    def inconclusive(self) -> bool:
        return self.best is not None and self.best != self.rating


@dataclass
class CriterionCell:
    criterion: str
    title: str
    rating: str
    cells: list[MetricCell] = field(default_factory=list)
    rated: int = 0             # cells that were rated (a rated label and a value)
    total: int = 0             # cells the rubric rates under this criterion
    best: str | None = None    # the rating if every inconclusive cell resolved to its better end

    @property
    def complete(self) -> bool:
        return self.rated == self.total

    @property
    def inconclusive(self) -> bool:
        return self.best is not None and self.best != self.rating


@dataclass
class Assessment:
    """The table (one row per scheme; criterion columns hold CriterionCell), rubric, provenance."""

    table: pd.DataFrame
    rubric: Rubric
    provenance: dict[str, Any]
    measurements: pd.DataFrame   # the stored run, as read

    @property
    def criteria(self) -> list[Criterion]:
        return list(self.rubric.criteria)

    def ratings(self) -> pd.DataFrame:
        """Scheme x criterion ratings (strings), for a quick look."""
        cols = ["scheme", "status"] + [c.key for c in self.criteria]
        out = self.table[cols].copy()
        for c in self.criteria:
            out[c.key] = out[c.key].map(lambda cc: cc.rating)
        return out

    def long(self) -> pd.DataFrame:
        """Long form: one row per scheme x metric (the CSV/JSON exports)."""
        rows = []
        for _, r in self.table.iterrows():
            for c in self.criteria:
                cc: CriterionCell = r[c.key]
                for m in cc.cells:
                    rows.append({"scheme": r["scheme"], "status": r["status"], "eu_category": r["eu_category"],
                                 "criterion": c.key, "criterion_rating": cc.rating, "metric": m.metric,
                                 "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "unit": m.unit,
                                 "n": m.n if m.measured else None, "rating": m.rating,
                                 "label": m.label or "not measured", "text": m.text, "params": m.params or None,
                                 "candidates": m.candidates, "rated_on": m.basis if m.rating in self.rubric.ratings else None,
                                 "inconclusive": m.inconclusive, "better_end_rating": m.best if m.inconclusive else None,
                                 "resolve_n": m.resolve_n, "rating_note": m.note or None,
                                 "criterion_rated": cc.rated, "criterion_total": cc.total,
                                 "source_run": m.run_id or None})
        return pd.DataFrame(rows)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _is_overall(p: str) -> bool:
    d = json.loads(p) if isinstance(p, str) and p else {}
    return d.get("slice", "all") == "all"


def _pick(rows: pd.DataFrame) -> tuple[pd.Series | None, int]:
    """The overall row for a metric; with several, the largest sample (ties: first by params)."""
    if rows.empty:
        return None, 0
    rows = rows[rows["params"].map(_is_overall)]
    if rows.empty:
        return None, 0
    best = rows.sort_values(["n", "params"], ascending=[False, True], kind="stable").iloc[0]
    return best, len(rows)


def metric_cell(rows: pd.DataFrame, rule, rubric: Rubric) -> MetricCell:
    row, k = _pick(rows)
    if row is None:
        return MetricCell(rule.metric, rating=rubric.not_measured, shown=rule.show,
                          note="" if rule.show else "not measured in this run")
    value, lo, hi = _num(row["value"]), _num(row["ci_low"]), _num(row["ci_high"])
    params = json.loads(row["params"]) if isinstance(row["params"], str) and row["params"] else {}
    if "stat" in params:  # the ci columns hold percentiles (e.g. median [p10, p90]), not a 95% interval
        r_lo, r_hi = None, None
    else:
        r_lo, r_hi = lo, hi
    cr = rule.assess(value, r_lo, r_hi, int(row["n"]), str(row["unit"]), str(row["label"]), rubric.ratings,
                     rubric.rated_labels, params.get("applies"))
    text = row.get("text")
    text = None if text is None or (isinstance(text, float) and math.isnan(text)) or text == "" else str(text)
    run_id = row.get("source_run") if isinstance(row.get("source_run"), str) else row.get("run_id", "")
    return MetricCell(rule.metric, value, lo, hi, str(row["unit"]), int(row["n"]),
                      cr.rating or rubric.not_measured, str(row["label"]), text, str(row["params"]), cr.basis, k,
                      cr.best if cr.rating else None, cr.resolve_n, cr.note, rule.show, str(run_id or ""))


def _scheme_meta(name: str, stored: pd.DataFrame) -> dict[str, Any]:
    from e2eebench.protocols.registry import SCHEMES
    cls = SCHEMES.get(name)
    if cls is not None:
        return {"family": cls.family, "eu_category": cls.eu_category, "verdict_to": cls.verdict_to,
                "trust": cls.trust, "modelled": bool(cls.modelled), "registered": True}
    if name.startswith("hasher:"):  # the accuracy benchmark's rows: a property of the hasher, not a scheme
        return {"family": "hasher", "eu_category": "hasher (accuracy benchmark; every fuzzy scheme using it)",
                "verdict_to": "-", "trust": "-", "modelled": False, "registered": False}
    vt = stored[(stored.scheme == name) & (stored.metric == "verdict_to")]["text"]
    return {"family": "", "eu_category": "", "verdict_to": str(vt.iloc[0]) if len(vt) else "",
            "trust": "", "modelled": False, "registered": False}


def scheme_order(in_run: list[str]) -> list[str]:
    """Design order first, then registered schemes, then anything else the run holds."""
    from e2eebench.protocols.registry import SCHEMES
    out = list(PLANNED_SCHEMES)
    out += [n for n in SCHEMES if n not in out]
    out += sorted(n for n in in_run if n not in out)
    return out


def build_assessment(measurements: pd.DataFrame, rubric: Rubric | None = None,
                     run_info: dict[str, Any] | None = None, include_planned: bool = True) -> Assessment:
    """The assessment of one run's measurements under ``rubric`` (the built-in one by default)."""
    rubric = rubric or load_rubric()
    df = measurements
    in_run = list(dict.fromkeys(df["scheme"])) if len(df) else []
    rows = []
    for name in scheme_order(in_run):
        meta = _scheme_meta(name, df)
        ran = name in in_run
        if not ran and not include_planned:
            continue
        if ran:
            labels = set(df[df.scheme == name]["label"])
            status = MODELLED if meta["modelled"] or labels == {"modelled"} else MEASURED
        else:
            status = NOT_RUN if meta["registered"] else NOT_IMPLEMENTED
            if meta["modelled"] and not meta["registered"]:
                status = NOT_IMPLEMENTED + " (modelled in the design)"
        row: dict[str, Any] = {"scheme": name, "status": status, "family": meta["family"],
                               "eu_category": EU_CATEGORY_TITLES.get(meta["eu_category"], meta["eu_category"]),
                               "verdict_to": meta["verdict_to"], "trust": meta["trust"]}
        sdf = df[df.scheme == name] if ran else df.iloc[0:0]
        for c in rubric.criteria:
            cells = [metric_cell(sdf[sdf.metric == r.metric], r, rubric) for r in c.rules]
            cr = rubric.combine_cells(c, [CellRating(m.rating if m.rating in rubric.ratings else None, m.basis, m.best)
                                          for m in cells])
            row[c.key] = CriterionCell(c.key, c.title, cr.rating, cells, cr.measured, cr.total, cr.best)
        rows.append(row)
    prov = dict(run_info or {})
    prov["rubric"] = rubric.source
    prov["rubric_sha256"] = rubric.digest
    return Assessment(pd.DataFrame(rows), rubric, prov, df)


def assess_run(db: str, run: str = "latest", rubric: str | None = None,
               include_planned: bool = True, with_runs: tuple[str, ...] | list[str] = ()) -> Assessment:
    """Read a stored run (id or 'latest') and assess it.

    ``with_runs``: further stored runs of the same database (an accuracy benchmark, attack runs,
    scale benchmarks) whose measurements join the table. Where several rows could fill one cell
    the one with the largest n is used (as within a run); every cell names the run it came from,
    and the provenance lists every run."""
    rub = load_rubric(rubric)
    with ResultStore(db) as store:
        run_id = store.resolve(run)
        frames = [store.measurements(run_id)]
        info = store.run_info(run_id)
        extra = []
        for r in with_runs:
            rid = store.resolve(r)
            if rid != run_id and rid not in [e["run_id"] for e in extra]:
                frames.append(store.measurements(rid))
                e = store.run_info(rid)
                extra.append({k: e[k] for k in ("run_id", "created", "command", "commit", "seed")})
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if extra:
        info = dict(info) | {"with_runs": extra}
    return build_assessment(df, rub, info, include_planned)
