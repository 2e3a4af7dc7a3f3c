"""Figure of example reconstructions: what a provider rebuilds from a hash vs a DCT block.

Rows: the true 32x32 thumbnail, the ridge inversion from PDQ's 256 bits (``hash-upload``),
from the 256 float32 DCT values (``partial-hash``, its default wire form), and the mean-image baseline. Columns are
held-out images: bundled photographs removed from the attacker's training set together with
their crops, and dead-leaves images from a seed the attacker never saw. Each panel carries
its SSIM against the truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from e2eebench.clientside.hashing import get_hasher
from e2eebench.protocols.errors import InputError
from e2eebench.evaluation.leakage import inversion as inv

DEFAULT_PHOTOS = ("bundled/skimage-astronaut", "bundled/skimage-camera", "bundled/skimage-coffee",
                  "bundled/skimage-chelsea", "bundled/sklearn-china")


@dataclass
class Examples:
    labels: list[str]
    truth: np.ndarray          # (n, 32, 32)
    from_hash: np.ndarray
    from_intermediate: np.ndarray
    baseline: np.ndarray       # (32, 32)
    scores: dict[str, inv.InversionScore]


def inversion_examples(photos: tuple[str, ...] = DEFAULT_PHOTOS, n_dead_leaves: int = 3,
                       seed: int = 987_654) -> Examples:
    """Held-out photos (and their crops) are excluded from training before fitting."""
    from e2eebench.evaluation.data.corpora import get_corpus
    pdq = get_hasher("pdq")
    bundled = {it.id: it for it in get_corpus("bundled").items()}
    missing = [p for p in photos if p not in bundled]
    if missing:
        raise InputError(f"not a bundled photo: {', '.join(missing)}")
    ts = inv.training_set("pdq")
    exclude = frozenset(i for i in ts.ids if any(i == p or i.startswith(p + "/") for p in photos))
    images = [(p.split("/", 1)[1], bundled[p].image) for p in photos]
    images += [(f"dead-leaves {i}", it.image)
               for i, it in enumerate(get_corpus("dead-leaves", seed=seed, size=256).items(n_dead_leaves))]
    truth = np.stack([inv.thumbnail(im) for _, im in images])
    hs = np.stack([pdq.hash(im) for _, im in images])
    fs = np.stack([pdq.features(im).astype(np.float32).astype(np.float64) for _, im in images])
    mh = inv.cached_model("hash", "pdq", exclude)
    mi = inv.cached_model("intermediate", "pdq", exclude)
    rh, ri = mh.reconstruct(hashes=hs), mi.reconstruct(features=fs)
    return Examples([n for n, _ in images], truth, rh, ri, mh.mean_thumb.reshape(inv.THUMB, inv.THUMB),
                    {"hash": inv.score(rh, truth, mh.mean_thumb),
                     "intermediate": inv.score(ri, truth, mi.mean_thumb)})


def plot_inversion(path: str | Path, examples: Examples | None = None) -> Path:
    """Write the reconstruction grid as PNG and return its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ex = examples or inversion_examples()
    rows = [("true thumbnail", ex.truth), ("from hash bits\n(hash-upload)", ex.from_hash),
            ("from DCT block\n(partial-hash)", ex.from_intermediate),
            ("mean image\n(no information)", np.repeat(ex.baseline[None], len(ex.labels), 0))]
    n = len(ex.labels)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n + 1.2, 1.75 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(imgs[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(ex.labels[c], fontsize=8)
            else:
                ax.set_xlabel(f"SSIM {inv.ssim(imgs[c], ex.truth[c]):.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    sh, si = ex.scores["hash"], ex.scores["intermediate"]
    fig.suptitle(f"Ridge inversion to 32x32 gray on held-out images: mean SSIM hash {sh.ssim[0]:.2f}, "
                 f"DCT block {si.ssim[0]:.2f}, mean image {sh.baseline_ssim[0]:.2f} (n={sh.n})", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    if not out.parent.exists():
        raise InputError(f"folder does not exist: {out.parent}")
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
