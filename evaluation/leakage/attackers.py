"""Attackers shared by the leakage probes: the lookup-table and byte-content classifiers and the
difference-of-proportions interval they are scored with (kept apart from :mod:`adversary` so the
probes of :mod:`counting` and :mod:`mpc_deviation` can use them without an import circle)."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import Estimate, wilson
from e2eebench.evaluation.run.store import Measurement

FOLDS = 5


def newcombe(a: Estimate, b: Estimate) -> tuple[float | None, float | None]:
    """Newcombe's hybrid score interval for the difference of two proportions (Wilson each)."""
    if a.ci_low is None or b.ci_low is None:
        return None, None
    d = a.value - b.value
    lo = d - math.sqrt((a.value - a.ci_low) ** 2 + (b.ci_high - b.value) ** 2)
    hi = d + math.sqrt((a.ci_high - a.value) ** 2 + (b.value - b.ci_low) ** 2)
    return max(-1.0, lo), min(1.0, hi)


def _params(run: SchemeRun, data: RunData, party: str) -> dict:
    return run.scheme.describe_params() | {"corpus": data.config.corpus, "profile": data.config.profile,
                                           "party": party, "list_size": len(data.db)}


def lookup_attack(features: dict[str, tuple], labels: dict[str, bool], seed: int) -> tuple[int, int, int, int]:
    """Cross-validated lookup-table attacker: per feature value guess the training majority
    (unseen values: the training majority class). Returns (tp, n_pos, fp, n_neg)."""
    mids = sorted(labels)
    y = np.array([labels[m] for m in mids])
    rng = np.random.default_rng(seed)
    fold = np.empty(len(mids), int)
    for cls in (True, False):   # stratified folds
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % FOLDS
    pred = np.zeros(len(mids), bool)
    for f in range(FOLDS):
        tr, te = fold != f, fold == f
        votes: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        for i in np.flatnonzero(tr):
            votes[features.get(mids[i], ())][int(y[i])] += 1
        prior = y[tr].mean() > 0.5 if tr.any() else False
        for i in np.flatnonzero(te):
            v = votes.get(features.get(mids[i], ()))
            pred[i] = (v[1] > v[0]) if v is not None and v[0] != v[1] else prior
    return int((pred & y).sum()), int(y.sum()), int((pred & ~y).sum()), int((~y).sum())


CONTENT_CHUNKS, CONTENT_WIDTH = 4, 32


def content_features(chunks: list[bytes]) -> np.ndarray:
    """The first and last CONTENT_WIDTH bytes of each of the first CONTENT_CHUNKS chunks a party
    received or opened (zero-padded), scaled to [0, 1], plus each chunk's presence: where a
    plaintext tag, a flag byte or a structured field would sit."""
    out = np.zeros((CONTENT_CHUNKS, 2 * CONTENT_WIDTH + 1))
    for i, c in enumerate(chunks[:CONTENT_CHUNKS]):
        a = np.frombuffer(c, np.uint8)
        head, tail = a[:CONTENT_WIDTH], a[-CONTENT_WIDTH:] if len(a) else a
        out[i, :len(head)] = head / 255.0
        out[i, CONTENT_WIDTH:CONTENT_WIDTH + len(tail)] = tail / 255.0
        out[i, -1] = 1.0
    return out.ravel()


def content_attack(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[int, int, int, int] | None:
    """5-fold stratified cross-validated logistic regression on standardised byte features; (tp, n_pos, fp,
    n_neg), or None with fewer than FOLDS of either class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    if y.sum() < FOLDS or (~y).sum() < FOLDS:
        return None
    pred = np.zeros(len(y), bool)
    with threadpool_limits(1):
        for tr, te in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(x, y):
            if len(set(y[tr])) < 2:
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300))
            pred[te] = model.fit(x[tr], y[tr]).predict(x[te])
    return int((pred & y).sum()), int(y.sum()), int((pred & ~y).sum()), int((~y).sum())


def content_advantage(run: SchemeRun, data: RunData, metric: str, party: str, x: np.ndarray, y: np.ndarray,
                      text: str, extra: dict | None = None) -> Measurement | None:
    r = content_attack(x, y, data.config.seed)
    if r is None:
        return None
    tp, npos, fp, nneg = r
    a, b = wilson(tp, npos), wilson(fp, nneg)
    lo, hi = newcombe(a, b)
    return Measurement(run.name, metric, a.value - b.value, "advantage", npos + nneg, lo, hi,
                       _params(run, data, party) | {"positives": npos} | (extra or {}),
                       text=f"{text}; TPR {tp}/{npos}, FPR {fp}/{nneg} (chance: 0)")
