"""An inversion attack on what a provider sees: hash bits or PDQ's DCT block -> a thumbnail.

The attacker is the provider of a hash-upload scheme. It trains, on images of its own (a
corpus disjoint from the traffic: dead-leaves under another seed plus the bundled photos
and crops), a ridge regression from what it receives to a 32x32 grayscale thumbnail, then
applies it to the hashes or intermediates it received. Quality is SSIM
(``skimage.metrics.structural_similarity``) and PSNR against the true thumbnail, next to a
no-information baseline: the mean training thumbnail, which any attacker has for free.

Two views: ``hash`` (PDQ's 256 bits as +-1) and ``intermediate`` (the 256 real DCT values
before the median step, standardised). Two attackers: ridge (linear, the weakest useful one)
and a small multi-layer perceptron (scikit-learn's ``MLPRegressor``, one hidden layer, early
stopping, fixed seed); the probe reports both and headlines the stronger, so the lower bound on
what leaks is not set by the weaker model. Training never sees an evaluated photo: ``exclude``
drops training items by id *and* by group (a photo and all its tiles form one group).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import Hasher, get_hasher
from e2eebench.protocols.errors import ConfigError
from e2eebench.evaluation.run.stats import mean_ci

THUMB = 32
KINDS = ("hash", "intermediate")
TRAIN_SEED = 0x5EED_1A7  # dead-leaves seed of the attacker's own corpus (not a run seed)
ALPHAS = (1.0, 10.0, 100.0, 1000.0)


def thumbnail(image: Image.Image) -> np.ndarray:
    """32x32 grayscale in [0, 1] (box filter: what a small preview shows)."""
    g = image.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.asarray(g, np.float64) / 255.0


def bits_pm1(hashes: np.ndarray) -> np.ndarray:
    """Packed hashes (n, bytes) -> +-1 floats (n, bits)."""
    return np.unpackbits(np.atleast_2d(hashes), axis=1).astype(np.float64) * 2.0 - 1.0


@dataclass(frozen=True)
class TrainingSet:
    ids: tuple[str, ...]
    groups: tuple[str, ...]   # source photo of each item (its tiles share it)
    hashes: np.ndarray        # (n, bytes) packed
    features: np.ndarray      # (n, bits) real-valued intermediate
    thumbs: np.ndarray        # (n, 32*32)


def training_set(hasher_name: str = "pdq", n_dead_leaves: int = 800, size: int = 96,
                 with_bundled: bool = True) -> TrainingSet:
    """The attacker's corpus, hashed once per process (the expensive part: ~5 ms per image)."""
    return _training_set(hasher_name, int(n_dead_leaves), int(size), bool(with_bundled))


@lru_cache(maxsize=4)
def _training_set(hasher_name: str, n_dead_leaves: int, size: int, with_bundled: bool) -> TrainingSet:
    from e2eebench.evaluation.data.corpora import get_corpus
    hasher = get_hasher(hasher_name)
    items = list(get_corpus("dead-leaves", seed=TRAIN_SEED, size=size).items(n_dead_leaves))
    if with_bundled:
        items += list(get_corpus("bundled", seed=0).items())
    hs, fs, ts = [], [], []
    for it in items:
        hs.append(hasher.hash(it.image))
        fs.append(hasher.features(it.image))
        ts.append(thumbnail(it.image).ravel())
    return TrainingSet(tuple(it.id for it in items), tuple(it.group for it in items), np.stack(hs), np.stack(fs),
                       np.stack(ts))


@dataclass(frozen=True)
class InversionModel:
    """Ridge regression x -> thumbnail; x is standardised with the training statistics."""

    kind: str
    hasher: str
    weights: np.ndarray   # (d, 1024)
    bias: np.ndarray      # (1024,)
    x_mean: np.ndarray
    x_std: np.ndarray
    mean_thumb: np.ndarray  # (1024,): the no-information baseline
    alpha: float
    n_train: int
    attacker: str = "ridge"
    mlp: tuple | None = None  # attacker "mlp": (MLPRegressor, principal components, their scales)

    @property
    def describe(self) -> str:
        if self.attacker == "mlp":
            net, comp, _ = self.mlp
            return (f"MLP ({net.hidden_layer_sizes[0]} hidden units to {len(comp)} principal components, "
                    f"{net.n_iter_} epochs, early stopping)")
        return f"ridge (alpha {self.alpha:g})"

    def inputs(self, hashes: np.ndarray | None = None, features: np.ndarray | None = None) -> np.ndarray:
        x = bits_pm1(hashes) if self.kind == "hash" else np.atleast_2d(np.asarray(features, np.float64))
        return (x - self.x_mean) / self.x_std

    def reconstruct(self, hashes: np.ndarray | None = None, features: np.ndarray | None = None) -> np.ndarray:
        """(n, 32, 32) thumbnails in [0, 1]."""
        x = self.inputs(hashes, features)
        if self.mlp is not None:
            from threadpoolctl import threadpool_limits
            net, comp, zs = self.mlp
            with threadpool_limits(1):
                y = (net.predict(x) * zs) @ comp + self.bias
        else:
            y = x @ self.weights + self.bias
        return np.clip(y, 0.0, 1.0).reshape(-1, THUMB, THUMB)


class _Ridge:
    """Ridge for several penalties from one eigendecomposition of the Gram matrix."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        # one BLAS thread: these products are small, and a multi-threaded BLAS on a busy
        # machine spends seconds spinning (measured 0.4 s vs 0.02 s per product)
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            self.e, self.v = np.linalg.eigh(x.T @ x)
            self.vxy = self.v.T @ (x.T @ y)

    def weights(self, alpha: float) -> np.ndarray:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            return self.v @ (self.vxy / (self.e + alpha)[:, None])


ATTACKERS = ("ridge", "mlp")
MLP_HIDDEN = 256
MLP_COMPONENTS = 64


def fit(kind: str, hasher: Hasher | str = "pdq", exclude: frozenset[str] = frozenset(),
        n_dead_leaves: int = 800, with_bundled: bool = True, attacker: str = "ridge") -> InversionModel:
    """Train the attack; ``exclude`` drops training items that are also evaluation targets, by
    id or by group (every tile of an evaluated photo goes with it).

    Ridge: the penalty is chosen on a 20% validation split of the training corpus (never on the
    evaluation images), then the model is refit on all of it. MLP: scikit-learn's early stopping
    holds out 10% of the training corpus; seed fixed.
    """
    if kind not in KINDS:
        raise ConfigError(f"inversion kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if attacker not in ATTACKERS:
        raise ConfigError(f"inversion attacker must be one of {', '.join(ATTACKERS)}, got {attacker!r}")
    name = hasher if isinstance(hasher, str) else hasher.name
    ts = training_set(name, n_dead_leaves, with_bundled=with_bundled)
    keep = np.array([i not in exclude and g not in exclude for i, g in zip(ts.ids, ts.groups)])
    x = bits_pm1(ts.hashes[keep]) if kind == "hash" else ts.features[keep]
    y = ts.thumbs[keep]
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    xs = (x - mu) / sd
    ym = y.mean(0)
    if attacker == "mlp":
        from sklearn.neural_network import MLPRegressor
        from threadpoolctl import threadpool_limits
        # targets: the thumbnails' top principal components, scaled (1024 raw pixel outputs from
        # ~1,000 images give no better SSIM and take several times as long)
        _, _, vt = np.linalg.svd(y - ym, full_matrices=False)
        comp = vt[:MLP_COMPONENTS]
        z = (y - ym) @ comp.T
        zs = z.std(0)
        zs[zs == 0] = 1.0
        mlp = MLPRegressor(hidden_layer_sizes=(MLP_HIDDEN,), alpha=1.0, max_iter=150, early_stopping=True,
                           n_iter_no_change=15, random_state=0)
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        with threadpool_limits(1), warnings.catch_warnings():
            # the epoch cap is part of the quick attacker's budget: stopping there is not an error
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(xs, z / zs)
        return InversionModel(kind, name, comp.T * 0.0, ym, mu, sd, ym.copy(), 1.0, int(keep.sum()),
                              "mlp", (mlp, comp, zs))
    rng = np.random.default_rng(len(xs))
    val = rng.random(len(xs)) < 0.2
    best, best_err = ALPHAS[0], np.inf
    part = _Ridge(xs[~val], y[~val] - ym)
    for a in ALPHAS:
        err = float(((xs[val] @ part.weights(a) + ym - y[val]) ** 2).mean())
        if err < best_err:
            best, best_err = a, err
    w = _Ridge(xs, y - ym).weights(best)
    return InversionModel(kind, name, w, ym, mu, sd, ym.copy(), best, int(keep.sum()))


@lru_cache(maxsize=8)
def cached_model(kind: str, hasher: str = "pdq", exclude: frozenset[str] = frozenset(),
                 attacker: str = "ridge") -> InversionModel:
    return fit(kind, hasher, exclude, attacker=attacker)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, data_range=1.0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


@dataclass(frozen=True)
class InversionScore:
    """Mean SSIM / PSNR of reconstructions and of the mean-image baseline, with 95% intervals."""

    ssim: tuple[float, float | None, float | None]
    psnr: tuple[float, float | None, float | None]
    baseline_ssim: tuple[float, float | None, float | None]
    baseline_psnr: tuple[float, float | None, float | None]
    n: int
    wins: int  # targets where the reconstruction's SSIM beats the baseline's


def score(recon: np.ndarray, targets: np.ndarray, mean_thumb: np.ndarray) -> InversionScore:
    base = mean_thumb.reshape(THUMB, THUMB)
    s = [ssim(r, t) for r, t in zip(recon, targets)]
    p = [psnr(r, t) for r, t in zip(recon, targets)]
    bs = [ssim(base, t) for t in targets]
    bp = [psnr(base, t) for t in targets]

    def ci(v):
        e = mean_ci(v)
        return (e.value, e.ci_low, e.ci_high)
    return InversionScore(ci(s), ci(p), ci(bs), ci(bp), len(s), int(sum(a > b for a, b in zip(s, bs))))
