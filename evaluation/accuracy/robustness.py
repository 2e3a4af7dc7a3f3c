"""Robustness and false-match rates of the perceptual hashers, measured the way Thorn does.

A benchmark takes N source images (distinct groups), T transforms and the hashers. For each
hasher and transform it keeps three distance records:

- *matched*: distance from each transformed copy to its own source;
- *nearest incorrect*: distance from each transformed copy to the closest other source
  (Thorn's ``perception`` method compares these two per image);
- *unrelated pairs*: the full histogram over every (transformed copy, other source) pair,
  N x (N - 1) per transform, counted in blocks (see :mod:`e2eebench.evaluation.data.hashing_pool`).

From these: ``recall`` at the hasher's default threshold, ``recall_at_precision`` (per
transform and pooled, Thorn's rule over matched vs nearest-incorrect distances: walk up the
thresholds and stop before the first where precision falls below P), ``tpr_at_fpr`` (threshold from the pooled unrelated-pair histogram; below
1/pairs an FPR can only be bounded, and the row says so), ``pair_fpr``, ROC curves and
distance summaries. Every rate is a Wilson interval with its n. Pairs share images, so the
pair intervals are narrower than the truth would be (they treat pairs as independent).

:func:`calibrated_threshold` picks a data-driven threshold on a fixed calibration set that
``e2eebench run --threshold calibrated`` uses, and :func:`run_pair_metrics` gives every run
its pair-level FPR and the account-level false-flag probability for its hasher and threshold.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from e2eebench.clientside.hashing import Hasher, get_hasher, list_hashers
from e2eebench.evaluation.data.hashing_pool import (HashTable, PairCounts, SourceRef, group_codes, hash_sources,
                                               pair_histogram)
from e2eebench.evaluation.run.stats import upper_bound_zero, wilson
from e2eebench.evaluation.run.store import Measurement
from e2eebench.protocols.errors import ConfigError

Progress = Callable[[str, int, int], None]

FPR_TARGETS = (1e-3, 1e-4, 1e-5, 1e-6)
DEFAULT_PRECISION = 0.9999           # Thorn's benchmark: recall at precision >= 99.99 %
PDQ_QUALITY_MIN = 50                 # PDQ's documented rule: discard hashes with quality < 50
DEFAULT_CORPUS = "mix"               # every bundled item (real photos) + dead-leaves for volume
CALIBRATION_TARGET_FPR = 1e-5        # certifiable with 0 observed on the calibration set (3/pairs < 1e-5)
# Thorn's published operating points (normalised thresholds x bits), for a like-for-like column
THORN_THRESHOLDS = {"pdq": round(0.258 * 256), "phash": round(0.273 * 64)}
CALIBRATION_DEAD_LEAVES = 100
CALIBRATION_SEED_OFFSET = 1_000_003  # calibration images never coincide with a run's (seed s) images
CALIBRATION_TRANSFORMS = ("identity", "jpeg:q=75", "resize:scale=0.5", "crop:frac=0.05", "screenshot:scale=0.8")
CALIBRATION_WORKERS = 2


# --------------------------------------------------------------------------- sources


def source_refs(corpus: str, n: int, seed: int = 0, size: int = 256) -> list[SourceRef]:
    """N source references. ``mix``: bundled photos and tiles (at most half of N, at most all
    97) then dead-leaves images for the rest; any other spec is a get_corpus spec."""
    from e2eebench.evaluation.data.corpora import get_corpus
    if not isinstance(n, int) or n < 2:
        raise ConfigError(f"--n must be an integer >= 2 (pairs need two sources), got {n!r}")
    specs: list[tuple[str, int]]
    if corpus == "mix":
        nb = min(len(get_corpus("bundled", seed=seed, size=size)), n // 2)
        specs = [("bundled", nb), ("dead-leaves", n - nb)]
    else:
        specs = [(corpus, n)]
    refs: list[SourceRef] = []
    for spec, k in specs:
        c = get_corpus(spec, seed=seed, size=size)
        if getattr(c, "finite", False):
            items = c.items()
            if k > len(items):
                raise ConfigError(f"corpus {spec!r} has {len(items)} items, {k} requested (use --corpus mix or dead-leaves)")
            refs += [SourceRef(spec, seed, size, i, it.id, it.group) for i, it in enumerate(items[:k])]
        else:
            for i in range(k):
                iid = f"{spec}/s{seed}/z{size}/{i}"
                refs.append(SourceRef(spec, seed, size, i, iid, iid))
    return refs


def describe_sources(refs: Sequence[SourceRef]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in refs:
        out[r.corpus] = out.get(r.corpus, 0) + 1
    out["groups"] = len({r.group for r in refs})
    return out


# --------------------------------------------------------------------------- pure metrics


def thorn_threshold(pos: np.ndarray, neg: np.ndarray, precision: float, bits: int) -> tuple[int | None, int, int]:
    """Thorn's rule, as Thorn's ``perception`` code applies it
    (``perception.benchmarking.common.compute_threshold_precision_recall``), on one group.

    ``pos`` = distance of each transformed image to its correct source, ``neg`` = to its nearest
    incorrect source (values > bits are discarded hashes: they never match but count in recall's
    denominator). Candidate thresholds are the positive distances in ascending order; the i-th
    candidate has tp = i + 1 and fp = #(neg <= candidate); the threshold is the candidate just
    *before the first* whose precision falls below ``precision`` (the largest positive when none
    falls; None, recall 0, when the very first does). Precision that recovers at a larger
    threshold does not count: the walk stops. Returns (tau or None, tp, fp) at tau.
    """
    pos, neg = np.asarray(pos), np.asarray(neg)
    cand = np.sort(pos[pos <= bits])
    if not cand.size:
        return None, 0, 0
    negs = np.sort(neg[neg <= bits])
    tp = np.arange(1, cand.size + 1)
    fp = np.searchsorted(negs, cand, side="right")
    bad = np.nonzero(tp < precision * (tp + fp))[0]
    if bad.size and bad[0] == 0:
        return None, 0, 0
    tau = int(cand[bad[0] - 1] if bad.size else cand[-1])
    return tau, int((pos <= tau).sum()), int((neg <= tau).sum())


def largest_threshold_at_precision(pos: np.ndarray, neg: np.ndarray, precision: float,
                                   bits: int) -> tuple[int | None, int, int]:
    """The rule this benchmark used before (kept for comparison, not used for any row): the
    largest threshold anywhere whose precision is >= ``precision``, even past a failing one."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    tp = np.cumsum(np.bincount(np.clip(pos, 0, bits + 1), minlength=bits + 2)[:bits + 1])
    fp = np.cumsum(np.bincount(np.clip(neg, 0, bits + 1), minlength=bits + 2)[:bits + 1])
    det = tp + fp
    ok = (det > 0) & (tp >= precision * np.maximum(det, 1))
    if not ok.any():
        return None, 0, 0
    tau = int(np.nonzero(ok)[0][-1])
    return tau, int(tp[tau]), int(fp[tau])


def threshold_for_fpr(hist: np.ndarray, target: float) -> int:
    """Largest tau with (pairs at distance <= tau) / pairs <= target; -1 if none."""
    cum = np.cumsum(hist)
    pairs = cum[-1]
    ok = np.nonzero(cum <= target * pairs)[0]
    return int(ok[-1]) if len(ok) else -1


def fpr_estimate(hist: np.ndarray, tau: int) -> tuple[int, int]:
    """(false pairs at distance <= tau, pairs)."""
    cum = np.cumsum(hist)
    return (int(cum[tau]) if tau >= 0 else 0), int(cum[-1])


def fpr_text(k: int, n: int, target: float | None = None) -> str | None:
    """Plain words where the rate can only be bounded (no pair observed)."""
    if n == 0:
        return "no unrelated pairs"
    if k:
        return None
    ub = upper_bound_zero(n)
    s = f"0 of {n} pairs: FPR bounded, <= {ub:.2g} (95%), not measured"
    if target is not None and target < ub:
        s += f"; target {target:g} is below what {n} pairs can certify"
    return s


def roc_curve(matched: np.ndarray, hist: np.ndarray, bits: int) -> pd.DataFrame:
    """TPR and pair FPR at every integer threshold 0..bits."""
    tp = np.cumsum(np.bincount(np.clip(matched.ravel(), 0, bits + 1), minlength=bits + 2)[:bits + 1])
    cum = np.cumsum(hist)
    return pd.DataFrame({"threshold": np.arange(bits + 1), "tpr": tp / max(1, matched.size),
                         "fpr": cum / max(1, cum[-1])})


def roc_auc(roc: pd.DataFrame) -> float:
    x = np.concatenate([[0.0], roc["fpr"].to_numpy(), [1.0]])
    y = np.concatenate([[0.0], roc["tpr"].to_numpy(), [1.0]])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


# --------------------------------------------------------------------------- the experiment


@dataclass
class HasherRecord:
    """Every distance record of one hasher (optionally with PDQ's quality filter)."""

    hasher: str
    bits: int
    default_threshold: int
    quality_filter: int | None
    matched: np.ndarray       # (T, N) distance to own source; bits + 1 = discarded
    nearest: np.ndarray       # (T, N) nearest incorrect source
    hist: np.ndarray          # (T, bits + 1) unrelated-pair histogram per transform
    coverage: np.ndarray      # (T,) fraction of transformed copies hashed (quality filter)
    calibrated_threshold: int | None = None

    @property
    def pooled_hist(self) -> np.ndarray:
        return self.hist.sum(axis=0)

    @property
    def pairs(self) -> int:
        return int(self.hist.sum())

    @property
    def key(self) -> str:
        return self.hasher + (f"+q>={self.quality_filter}" if self.quality_filter else "")


@dataclass
class AccuracyResult:
    sources: dict[str, int]
    n: int
    transforms: list[str]
    strengths: list[float]
    records: list[HasherRecord]
    precision: float
    seed: int
    corpus: str
    timings: dict[str, float] = field(default_factory=dict)

    def record(self, hasher: str, quality_filter: int | None = None) -> HasherRecord:
        for r in self.records:
            if r.hasher == hasher and r.quality_filter == quality_filter:
                return r
        raise KeyError(hasher)

    def roc(self, hasher: str, quality_filter: int | None = None) -> pd.DataFrame:
        r = self.record(hasher, quality_filter)
        return roc_curve(r.matched, r.pooled_hist, r.bits)

    def distributions(self) -> list[dict]:
        """Matched and unrelated-pair distance histograms per hasher x transform (counts by distance)."""
        out = []
        for r in self.records:
            for ti, (spec, strength) in enumerate(zip(self.transforms, self.strengths)):
                m = r.matched[ti]
                out.append({"hasher": r.key, "transform": spec, "strength": strength,
                            "matched": np.bincount(m[m <= r.bits], minlength=r.bits + 1).tolist(),
                            "discarded": int((m > r.bits).sum()), "unrelated": r.hist[ti].tolist()})
        return out

    def roc_curves(self) -> dict[str, list[dict]]:
        return {r.key: self.roc(r.hasher, r.quality_filter).to_dict("records") for r in self.records}

    def measurements(self) -> list[Measurement]:
        out: list[Measurement] = []
        for r in self.records:
            out += _record_measurements(self, r)
        return out

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per hasher x transform x metric (the CLI's json/csv)."""
        rows = []
        for m in self.measurements():
            p = m.params
            rows.append({"hasher": p.get("hasher"), "transform": p.get("transform"), "strength": p.get("strength"),
                         "metric": m.metric, "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n,
                         "threshold": p.get("threshold"), "threshold_kind": p.get("threshold_kind"), "quality_filter": p.get("quality_filter"),
                         "fpr_target": p.get("fpr_target"), "text": m.text, "label": m.label})
        return pd.DataFrame(rows)

    def robustness_table(self, metric: str = "recall_at_precision") -> pd.DataFrame:
        """Transforms x hashers, values in percent (the shape of Thorn's published table)."""
        df = self.to_frame()
        df = df[(df.metric == metric) & df.quality_filter.isna()]
        t = df.pivot_table(index="transform", columns="hasher", values="value", aggfunc="first", sort=False)
        return (t * 100).round(1)


def _rate(hasher_key: str, metric: str, k: int, n: int, params: dict, text: str | None = None) -> Measurement:
    e = wilson(k, n)
    return Measurement(f"hasher:{hasher_key}", metric, e.value if n else None, "rate", n, e.ci_low, e.ci_high,
                       params, text)


def _record_measurements(res: AccuracyResult, r: HasherRecord) -> list[Measurement]:
    out: list[Measurement] = []
    base = {"hasher": r.hasher, "corpus": res.corpus, "n_sources": res.n, "seed": res.seed}
    if r.quality_filter:
        base["quality_filter"] = r.quality_filter
    pooled = r.pooled_hist
    pairs = int(pooled.sum())
    thresholds = {"default": r.default_threshold}
    if r.calibrated_threshold is not None:
        thresholds["calibrated"] = r.calibrated_threshold
    if r.hasher in THORN_THRESHOLDS:
        thresholds["thorn"] = THORN_THRESHOLDS[r.hasher]
    fpr_taus = {f: threshold_for_fpr(pooled, f) for f in FPR_TARGETS}
    for kind, tau in thresholds.items():
        k, n = fpr_estimate(pooled, tau)
        out.append(_rate(r.key, "pair_fpr", k, n, base | {"transform": "all", "threshold": tau, "threshold_kind": kind},
                         fpr_text(k, n)))
    for ti, (spec, strength) in enumerate(zip(res.transforms, res.strengths)):
        p = base | {"transform": spec, "strength": strength}
        m, nb = r.matched[ti], r.nearest[ti]
        N = len(m)
        for kind, tau in thresholds.items():
            out.append(_rate(r.key, "recall", int((m <= tau).sum()), N, p | {"threshold": tau, "threshold_kind": kind}))
        tau, tp, fp = thorn_threshold(m, nb, res.precision, r.bits)
        out.append(_rate(r.key, "recall_at_precision", tp, N, p | {"precision": res.precision, "threshold": tau},
                         None if tau is not None else f"no threshold reaches precision {res.precision}"))
        for f, ftau in fpr_taus.items():
            k, n = fpr_estimate(pooled, ftau)
            out.append(_rate(r.key, "tpr_at_fpr", int((m <= ftau).sum()) if ftau >= 0 else 0, N,
                             p | {"fpr_target": f, "threshold": ftau, "pair_fpr_at_threshold": k / n if n else None,
                                  "pairs": n}, fpr_text(k, n, f)))
        k, n = fpr_estimate(r.hist[ti], r.default_threshold)
        out.append(_rate(r.key, "pair_fpr", k, n, p | {"threshold": r.default_threshold, "threshold_kind": "default"},
                         fpr_text(k, n)))
        if r.quality_filter:
            out.append(_rate(r.key, "coverage", int(round(r.coverage[ti] * N)), N, p))
        valid = m[m <= r.bits]
        out.append(Measurement(f"hasher:{r.key}", "matched_distance_median", float(np.median(valid)) if len(valid) else None,
                               "bits", len(valid), params=p,
                               text=None if len(valid) else "every copy discarded"))
        cum = np.cumsum(r.hist[ti])
        if cum[-1]:
            out.append(Measurement(f"hasher:{r.key}", "unrelated_distance_min", float(np.argmax(cum > 0)), "bits",
                                   int(cum[-1]), params=p))
    # overall over all transforms (Thorn reports one overall figure too)
    allm, alln = r.matched.ravel(), r.nearest.ravel()
    pa = base | {"transform": "all"}
    out.append(_rate(r.key, "recall", int((allm <= r.default_threshold).sum()), allm.size,
                     pa | {"threshold": r.default_threshold, "threshold_kind": "default"}))
    tau, tp, _ = thorn_threshold(allm, alln, res.precision, r.bits)
    out.append(_rate(r.key, "recall_at_precision", tp, allm.size, pa | {"precision": res.precision, "threshold": tau}))
    roc = roc_curve(r.matched, pooled, r.bits)
    out.append(Measurement(f"hasher:{r.key}", "roc_auc", roc_auc(roc), "ratio", pairs, params=pa))
    return out


class RobustnessBenchmark:
    """Thorn-style robustness benchmark: sources x transforms x hashers -> AccuracyResult."""

    def __init__(self, hashers: Sequence[str] | None = None, transforms: Sequence[str] | None = None,
                 corpus: str = DEFAULT_CORPUS, n: int = 200, seed: int = 0, *, size: int = 256,
                 precision: float = DEFAULT_PRECISION, quality_filter: bool = False, workers: int = 2,
                 calibrate: bool = True) -> None:
        from e2eebench.evaluation.data.transforms import STANDARD_SUITE, parse_transform
        self.hashers = [get_hasher(h).name for h in (hashers or [h.name for h in list_hashers()])]
        if not self.hashers:
            raise ConfigError("no hashers selected")
        specs = list(transforms or STANDARD_SUITE)
        parsed = [parse_transform(s) for s in specs]
        self.transforms = [t.spec for t in parsed]
        self.strengths = [t.strength for t in parsed]
        if not 0 < precision <= 1:
            raise ConfigError(f"precision must be in (0, 1], got {precision}")
        self.corpus, self.n, self.seed, self.size = corpus, n, seed, size
        self.precision, self.quality_filter, self.workers, self.calibrate = precision, quality_filter, workers, calibrate
        self.refs = source_refs(corpus, n, seed, size)

    def run(self, progress: Progress | None = None) -> AccuracyResult:
        t0 = time.perf_counter()
        table = hash_sources(self.refs, self.transforms, self.hashers, seed=self.seed, workers=self.workers,
                             progress=progress)
        t1 = time.perf_counter()
        groups = group_codes([r.group for r in self.refs])
        records = []
        jobs = [(h, None) for h in self.hashers]
        if self.quality_filter and "pdq" in self.hashers:
            jobs.append(("pdq", PDQ_QUALITY_MIN))
        for i, (h, qf) in enumerate(jobs):
            rec = distance_record(table, h, groups, qf)
            if self.calibrate:
                rec.calibrated_threshold = calibrated_threshold(h, seed=self.seed)
            records.append(rec)
            if progress:
                progress("pairs", i + 1, len(jobs))
        t2 = time.perf_counter()
        return AccuracyResult(describe_sources(self.refs), len(self.refs), self.transforms, self.strengths, records,
                              self.precision, self.seed, self.corpus,
                              {"hash_wall_s": t1 - t0, "hash_cpu_s": table.cpu_s, "pairs_wall_s": t2 - t1})


def distance_record(table: HashTable, hasher: str, groups: np.ndarray, quality_filter: int | None = None) -> HasherRecord:
    """Matched, nearest-incorrect and unrelated-pair records of one hasher from a hash table."""
    h = get_hasher(hasher)
    orig, tr = table.original[hasher], table.transformed[hasher]
    T, N = tr.shape[:2]
    sentinel = h.bits + 1
    keep_o = np.ones(N, bool)
    keep_t = np.ones((T, N), bool)
    if quality_filter:
        if table.quality_original is None:
            raise ConfigError("the quality filter needs PDQ hashes")
        keep_o = table.quality_original >= quality_filter
        keep_t = table.quality_transformed >= quality_filter
    matched = np.bitwise_count(tr ^ orig[None]).sum(-1, dtype=np.int32)
    matched[~(keep_t & keep_o[None])] = sentinel
    nearest = np.full((T, N), sentinel, np.int32)
    hist = np.zeros((T, h.bits + 1), np.int64)
    ro, go = orig[keep_o], groups[keep_o]
    for t in range(T):
        kt = keep_t[t]
        pc: PairCounts = pair_histogram(tr[t][kt], ro, h.bits, query_groups=groups[kt], ref_groups=go)
        hist[t] = pc.hist
        nearest[t, kt] = pc.nearest
    return HasherRecord(hasher, h.bits, h.default_threshold, quality_filter, matched, nearest, hist,
                        keep_t.mean(axis=1))


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """The fixed calibration set's records for one hasher."""

    hasher: str
    seed: int
    hist: np.ndarray        # pooled unrelated-pair histogram
    matched: np.ndarray     # (T, N) matched distances under CALIBRATION_TRANSFORMS
    n_sources: int
    source_min: np.ndarray | None = None   # (N, N) closest distance between any versions of two sources
    source_valid: np.ndarray | None = None  # (N, N) True where the two sources are of different groups

    @property
    def pairs(self) -> int:
        return int(self.hist.sum())

    def threshold(self, target_fpr: float = CALIBRATION_TARGET_FPR) -> int:
        return threshold_for_fpr(self.hist, target_fpr)


@lru_cache(maxsize=16)
def calibration(hasher: str, seed: int = 0) -> Calibration:
    """Hash the calibration set once per process: every bundled item (real photos) plus
    100 dead-leaves images of seed ``seed + 1_000_003`` (disjoint from a run's own images), each
    untransformed and under CALIBRATION_TRANSFORMS; unrelated pairs = every pair of these
    images from different groups (~690,000)."""
    from e2eebench.evaluation.data.corpora import get_corpus
    name = get_hasher(hasher).name
    cs = seed + CALIBRATION_SEED_OFFSET
    nb = len(get_corpus("bundled"))
    refs = source_refs("bundled", nb, 0) + source_refs("dead-leaves", CALIBRATION_DEAD_LEAVES, cs)
    table = hash_sources(refs, list(CALIBRATION_TRANSFORMS), [name], seed=cs, workers=CALIBRATION_WORKERS)
    g = group_codes([r.group for r in refs])
    every = np.concatenate([table.original[name], table.transformed[name].reshape(-1, table.original[name].shape[1])])
    groups = np.concatenate([g] + [g] * len(CALIBRATION_TRANSFORMS))
    pc = pair_histogram(every, every, get_hasher(name).bits, query_groups=groups, ref_groups=groups)
    matched = np.bitwise_count(table.transformed[name] ^ table.original[name][None]).sum(-1, dtype=np.int32)
    src_min = _source_min(every, len(refs))
    valid = (g[:, None] != g[None, :])
    return Calibration(name, seed, pc.hist // 2, matched, len(refs), src_min, valid)  # each unordered pair was seen twice


def _source_min(every: np.ndarray, n: int) -> np.ndarray:
    """Closest distance between any version of source i and any version of source j: ``every``
    holds V versions of n sources, version-major (rows v * n + i)."""
    bits = np.unpackbits(every, axis=1).astype(np.float32)
    d = bits @ (1 - bits).T
    d = (d + d.T).astype(np.int32)                # Hamming = a.(1-b) + (1-a).b
    V = every.shape[0] // n
    return d.reshape(V, n, V, n).min(axis=(0, 2))


def calibrated_threshold(hasher: Hasher | str, seed: int = 0, target_fpr: float = CALIBRATION_TARGET_FPR) -> int:
    """The largest threshold whose measured pair FPR on the calibration set is <= target_fpr.

    The default target, 1e-5, is about the smallest the ~690,000 calibration pairs can certify when
    none is observed (3 / pairs < 1e-5). Returns the hasher's largest threshold with that FPR,
    never below 0.
    """
    if not 0 < target_fpr < 1:
        raise ConfigError(f"target FPR must be in (0, 1), got {target_fpr}")
    name = hasher.name if isinstance(hasher, Hasher) else str(hasher)
    return max(0, calibration(name, int(seed)).threshold(target_fpr))


# --------------------------------------------------------------------------- run integration

MESSAGES_PER_YEAR = 365 * 20   # modelled: 20 images a day, every day


def run_pair_metrics(run, data) -> list[Measurement]:
    """Pair-level FPR / TPR at the run's hasher and threshold (calibration set), the run's
    hard-negative pair distances, and the modelled probability that an innocent account is
    flagged within a year (see account_model). Pairs are counted per *source* pair (a pair of
    source images counts once, whatever number of their copies were compared)."""
    from e2eebench.evaluation.accuracy.account_model import (account_measurements, source_pair_counts,
                                                             zipf_popularity)
    scheme = run.scheme
    matching = getattr(scheme, "matching", "fuzzy")
    # exact-match schemes (hash equality) act at distance 0 whatever their nominal threshold;
    # chunked / approximate ones are taken at their threshold (their own extra error is theirs)
    hasher, tau = scheme.hasher.name, (0 if matching == "exact" else scheme.threshold)
    cal = calibration(hasher, int(data.config.seed))
    params = scheme.describe_params() | {"corpus": "calibration", "profile": data.config.profile,
                                         "calibration_sources": cal.n_sources,
                                         "calibrated_threshold": cal.threshold(), "threshold_used": tau,
                                         "matching": matching}
    k, n = source_pair_counts(cal.source_min, cal.source_valid, tau)
    out = [_rate(hasher, "pair_fpr", k, n, params | {"unit": "source pair"}, fpr_text(k, n))]
    kv, nv = fpr_estimate(cal.hist, tau)
    out.append(_rate(hasher, "pair_fpr", kv, nv, params | {"slice": "version pairs", "unit": "version pair"},
                     "every pair of copies: pairs share sources, so this n overstates the evidence; "
                     "the source-pair row is the one to quote"))
    m = cal.matched.ravel()
    out.append(_rate(hasher, "pair_tpr", int((m <= tau).sum()), m.size,
                     params | {"transforms": ",".join(CALIBRATION_TRANSFORMS), "unit": "copy"}))
    out += hard_negative_pair_rows(data, hasher, tau, params)
    for x in out:
        x.scheme = run.name
    t = int(getattr(scheme, "p", {}).get("t", 1) or 1)
    configured = getattr(data.config, "list_size", None)
    L, source = (configured, "assumed deployed list size") if configured else (len(data.db), "the run's list")
    wl = data.config.workload
    pop = zipf_popularity(max(1, len(data.benign)), wl.zipf_a)
    out += account_measurements(run.name, k, n, list_size=L, list_source=source, messages=MESSAGES_PER_YEAR,
                                t=t, pop=pop, params=params, seed=int(data.config.seed))
    return out


_HN_CACHE: dict = {}


def hard_negative_pair_rows(data, hasher: str, tau: int, params: dict) -> list[Measurement]:
    """Share of the run's hard-negative pairs (within-family pairs and sibling-vs-list-item
    pairs) within tau, per kind and pooled, plus the distance quartiles."""
    from e2eebench.evaluation.data.hard_negatives import pair_distances
    key = (id(data), hasher)
    if key not in _HN_CACHE:
        _HN_CACHE.clear()
        h = get_hasher(hasher)
        _HN_CACHE[key] = pair_distances(data.benign, data.known, h.hash, h.bits)
    dist = _HN_CACHE[key]
    if not dist:
        return []
    out = []
    allv = np.concatenate(list(dist.values()))
    for kind, d in sorted(dist.items()) + [("all", allv)]:
        q = np.percentile(d, [0, 25, 50, 75]).round(1).tolist()
        out.append(_rate(hasher, "hard_negative_pairs_within_threshold", int((d <= tau).sum()), len(d),
                         params | {"slice": kind, "unit": "image pair", "corpus": "run hard negatives",
                                   "distance_min_q1_median_q3": q},
                         "pairs of distinct benign look-alikes (families share a scene, template or chrome)"))
    return out
