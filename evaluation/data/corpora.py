"""Deterministic, seeded image sources for the harness.

A corpus yields :class:`Item` records. Known and benign sets are drawn from the same corpus
with :func:`split_known_benign`, which splits *by group* (a photo and its crops form one
group), so no image on the benign side is a crop of a known photo: otherwise a "false
positive" could really be a true match and the accuracy numbers would lie.

Corpora:

- ``dead-leaves`` — procedural occluding disks (the dead-leaves model) with a
  scale-invariant radius law, plus a faint 1/f texture: natural-image statistics at any size
  and any count, with no download. Item *i* of seed *s* is the same image whatever *n*.
- ``bundled`` — the real photographs that installed dependencies ship (scikit-image's
  legacy data files, PyWavelets' images, scikit-learn's sample images), read straight from
  the installed package folders so nothing is ever fetched. 19 photos (the PyWavelets
  camera duplicates scikit-image's and is dropped); the 17 with a short side of at least
  400 px also yield non-overlapping tiles (``is_crop=True``): 2 x 2 tiles each, 3 x 3 for the
  two largest (hubble, retina) — 78 tiles, 97 items in all.
- ``folder:PATH`` — a user's own images, sorted by path.
"""
from __future__ import annotations

import hashlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from e2eebench.protocols.errors import ConfigError, InputError, UnknownNameError


@dataclass(frozen=True)
class Item:
    """One image of a corpus; ``group`` ties crops to the photo they come from."""

    id: str
    image: Image.Image
    source: str
    group: str
    is_crop: bool = False


class Corpus(ABC):
    """A deterministic image source; subclasses register themselves by ``name``."""

    name: ClassVar[str]
    description: ClassVar[str]
    finite: ClassVar[bool]

    def __init__(self, *, seed: int = 0, size: int = 256) -> None:
        self.seed = int(seed)
        self.size = int(size)

    @abstractmethod
    def _generate(self, n: int | None) -> Iterator[Item]:
        """Yield the first ``n`` items (all of them when ``n`` is None and the corpus is finite)."""

    def iter_items(self, n: int | None = None) -> Iterator[Item]:
        """Generator variant of :meth:`items` (images are built lazily)."""
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ConfigError(f"corpus {self.name!r}: item count must be an integer >= 0, got {n!r}")
        if n is None and not self.finite:
            raise ConfigError(f"corpus {self.name!r} is unbounded: give the number of items n")
        if n is not None and self.finite and n > len(self):
            raise ConfigError(f"corpus {self.name!r} has {len(self)} items available, {n} requested")
        return self._generate(n)

    def items(self, n: int | None = None) -> list[Item]:
        """The first ``n`` items, the same list every time for the same seed."""
        return list(self.iter_items(n))

    def __len__(self) -> int:
        raise TypeError(f"corpus {self.name!r} is unbounded and has no length")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, size={self.size})"


CORPORA: dict[str, type[Corpus]] = {}


def register_corpus(cls: type[Corpus]) -> type[Corpus]:
    """Class decorator: make a corpus available by its ``name``."""
    CORPORA[cls.name] = cls
    return cls


# --------------------------------------------------------------------------- dead leaves


def dead_leaves_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One dead-leaves image, ``(size, size, 3)`` uint8.

    Disks are dropped in order and later ones occlude earlier ones; radii follow
    p(r) ∝ r^-3 on [rmin, rmax], which makes the picture statistically scale-invariant
    (every octave of radius covers the same area), as natural scenes are. Rendering is one
    vectorised pass: every (disk, pixel-in-bounding-box) pair at once, and each pixel keeps
    the highest disk index that covers it.
    """
    rmin, rmax = max(1.5, size / 160.0), size / 3.0
    a, b = rmin**-2, rmax**-2
    mean_area = math.pi * 2.0 / (a - b) * math.log(rmax / rmin)
    margin = rmax / 4.0
    span = size + 2 * margin
    coverage = 3.5  # expected layers per pixel; uncovered fraction ~ exp(-3.5) = 3 %
    n = int(math.ceil(coverage * span * span / mean_area))

    u = rng.random(n)
    r = (a - u * (a - b)) ** -0.5  # inverse CDF of p(r) ∝ r^-3
    cx = rng.random(n) * span - margin
    cy = rng.random(n) * span - margin
    # Luminance plus a modest chroma offset: neighbouring surfaces differ mostly in brightness.
    lum = rng.uniform(0.04, 0.96, n)
    colours = np.clip(lum[:, None] + rng.normal(0.0, 0.12, (n, 3)), 0.0, 1.0)

    # Keep only disks whose box meets the image.
    h = np.ceil(r).astype(np.int32)
    keep = (cx + h >= 0) & (cx - h < size) & (cy + h >= 0) & (cy - h < size)
    idx = np.nonzero(keep)[0]
    r2, cx, cy, h = r[idx] ** 2, cx[idx], cy[idx], h[idx]
    label = np.zeros(size * size, dtype=np.int32)  # 0 = background, disk j -> j + 1
    # One broadcast per distinct box half-width: (disks, box pixels) without any division.
    order = np.argsort(h, kind="stable")
    hs, first = np.unique(h[order], return_index=True)
    bounds = np.append(first, order.size)
    for hw, lo, hi in zip(hs.tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
        sel = order[lo:hi]
        off = np.arange(-hw, hw + 1, dtype=np.int32)
        x = (np.floor(cx[sel]).astype(np.int32)[:, None, None] + off[None, None, :])
        y = (np.floor(cy[sel]).astype(np.int32)[:, None, None] + off[None, :, None])
        dx = x + 0.5 - cx[sel, None, None]
        dy = y + 0.5 - cy[sel, None, None]
        inside = (dx * dx + dy * dy <= r2[sel, None, None])
        inside &= (x >= 0) & (x < size) & (y >= 0) & (y < size)
        ii = np.nonzero(inside)
        np.maximum.at(label, y[ii[0], ii[1], 0] * size + x[ii[0], 0, ii[2]], sel[ii[0]].astype(np.int32) + 1)

    palette = np.vstack([np.full((1, 3), rng.uniform(0.2, 0.8)), colours[idx]])
    img = palette[label].reshape(size, size, 3)
    img += _pink_noise(rng, size)[:, :, None] * 0.035
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Zero-mean, unit-variance field with a 1/f amplitude spectrum (texture inside surfaces)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = np.inf
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
    field = np.fft.irfft2(spec, s=(size, size))
    return (field - field.mean()) / (field.std() + 1e-12)


@register_corpus
class DeadLeavesCorpus(Corpus):
    """Procedural images with natural-image statistics; any size, any count."""

    name = "dead-leaves"
    description = "procedural occluding disks (r^-3 radii) + 1/f texture; any size and count, no download"
    finite = False

    def __init__(self, *, seed: int = 0, size: int = 256) -> None:
        if not 16 <= int(size) <= 4096:
            raise ConfigError(f"corpus 'dead-leaves': size must be in [16, 4096], got {size}")
        super().__init__(seed=seed, size=size)

    def image(self, i: int) -> Image.Image:
        """Item ``i`` alone: its own RNG stream, so it never depends on how many came before."""
        rng = np.random.default_rng([self.seed, int(i)])
        return Image.fromarray(dead_leaves_image(rng, self.size), "RGB")

    def _generate(self, n: int | None) -> Iterator[Item]:
        assert n is not None
        for i in range(n):
            iid = f"dead-leaves/s{self.seed}/z{self.size}/{i}"
            yield Item(id=iid, image=self.image(i), source=self.name, group=iid)


# --------------------------------------------------------------------------- bundled photos


@dataclass(frozen=True)
class _PhotoSource:
    name: str
    loader: Callable[[], np.ndarray]


def _skimage_file(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage

        path = Path(skimage.__file__).parent / "data" / filename
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    return load


def _pywt_image(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import pywt.data

        arr = np.asarray(getattr(pywt.data, name)())  # reads an .npz shipped in the wheel
        return np.asarray(Image.fromarray(arr.astype(np.uint8)).convert("RGB"))

    return load


def _sklearn_image(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import sklearn.datasets

        path = Path(sklearn.datasets.__file__).parent / "images" / filename
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    return load


# Photographs only: synthetic charts (chessboard, color, logo, phantom, clock_motion), the
# horse silhouette, text scans and the tiny retina crop are left out. The stereo partner
# motorcycle_right is left out because it nearly duplicates motorcycle_left.
_PHOTOS: tuple[_PhotoSource, ...] = (
    *(
        _PhotoSource(f"skimage-{stem}", _skimage_file(fname))
        for stem, fname in (
            ("astronaut", "astronaut.png"),
            ("camera", "camera.png"),
            ("chelsea", "chelsea.png"),
            ("coffee", "coffee.png"),
            ("coins", "coins.png"),
            ("moon", "moon.png"),
            ("hubble", "hubble_deep_field.jpg"),
            ("rocket", "rocket.jpg"),
            ("retina", "retina.jpg"),
            ("motorcycle", "motorcycle_left.png"),
            ("ihc", "ihc.png"),
            ("cell", "cell.png"),
            ("grass", "grass.png"),
            ("gravel", "gravel.png"),
            ("brick", "brick.png"),
        )
    ),
    _PhotoSource("pywt-ascent", _pywt_image("ascent")),
    _PhotoSource("pywt-aero", _pywt_image("aero")),
    _PhotoSource("pywt-camera", _pywt_image("camera")),  # same pixels as skimage camera: dropped
    _PhotoSource("sklearn-china", _sklearn_image("china.jpg")),
    _PhotoSource("sklearn-flower", _sklearn_image("flower.jpg")),
)

_TILE_MIN = 200  # a tile must keep at least this many pixels per side
_TILE_MAX_GRID = 3


def _tile_grid(h: int, w: int) -> int:
    """Tiles per side for a photo (0 = no tiles): k x k non-overlapping tiles of >= 200 px."""
    k = min(_TILE_MAX_GRID, min(h, w) // _TILE_MIN)
    return k if k >= 2 else 0


@lru_cache(maxsize=1)
def _bundled_arrays() -> tuple[tuple[str, np.ndarray], ...]:
    """Load every bundled photo once, dropping exact pixel duplicates (the camera image)."""
    seen: set[bytes] = set()
    out: list[tuple[str, np.ndarray]] = []
    for src in _PHOTOS:
        try:
            arr = src.loader()
        except (OSError, ImportError, AttributeError, ValueError) as exc:
            raise InputError(f"bundled photo {src.name!r} could not be read: {exc}") from exc
        digest = hashlib.sha256(arr.tobytes() + repr(arr.shape).encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        arr = np.ascontiguousarray(arr)
        arr.setflags(write=False)
        out.append((src.name, arr))
    return tuple(out)


@register_corpus
class BundledCorpus(Corpus):
    """Real photographs shipped inside installed packages; full photos first, then tiles.

    Options: ``bundled:crops=false`` keeps the full photos only. Order is fixed (the seed does
    not reorder it; :func:`split_known_benign` does the seeded drawing) and ``size`` is
    ignored: photos keep their native resolution.
    """

    name = "bundled"
    description = "real photos shipped by scikit-image, PyWavelets and scikit-learn (+ non-overlapping tiles)"
    finite = True

    def __init__(self, *, seed: int = 0, size: int = 256, crops: bool = True) -> None:
        super().__init__(seed=seed, size=size)
        self.crops = bool(crops)

    def _entries(self) -> list[tuple[str, str, bool, np.ndarray]]:
        photos = _bundled_arrays()
        entries = [(f"bundled/{name}", f"bundled/{name}", False, arr) for name, arr in photos]
        if self.crops:
            for name, arr in photos:
                h, w = arr.shape[:2]
                k = _tile_grid(h, w)
                for row in range(k):
                    for col in range(k):
                        tile = arr[row * h // k : (row + 1) * h // k, col * w // k : (col + 1) * w // k]
                        entries.append((f"bundled/{name}#r{row}c{col}", f"bundled/{name}", True, tile))
        return entries

    def __len__(self) -> int:
        return len(self._entries())

    def _generate(self, n: int | None) -> Iterator[Item]:
        entries = self._entries()
        for iid, group, is_crop, arr in entries[: len(entries) if n is None else n]:
            yield Item(
                id=iid,
                image=Image.fromarray(np.array(arr), "RGB"),
                source=self.name,
                group=group,
                is_crop=is_crop,
            )


# --------------------------------------------------------------------------- folder

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read one image file as RGB (first frame of an animation) or raise :class:`InputError`."""
    try:
        with Image.open(path) as im:
            im.seek(0)
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {os.fspath(path)!r}: {exc}") from exc


@register_corpus
class FolderCorpus(Corpus):
    """The user's own images (searched recursively), in path order; seed and size unused."""

    name = "folder"
    description = "folder:PATH — your own jpg/png/bmp/gif/tiff/webp images, sorted by path"
    finite = True

    def __init__(self, *, seed: int = 0, size: int = 256, path: str | os.PathLike[str] = "") -> None:
        super().__init__(seed=seed, size=size)
        root = Path(path)
        if not os.fspath(path) or not root.is_dir():
            raise InputError(f"image folder {os.fspath(path)!r} does not exist or is not a directory")
        try:
            files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        except OSError as exc:
            raise InputError(f"image folder {os.fspath(path)!r} cannot be listed: {exc}") from exc
        self.root = root
        self.files = sorted(files, key=lambda p: p.relative_to(root).as_posix())

    def __len__(self) -> int:
        return len(self.files)

    def _generate(self, n: int | None) -> Iterator[Item]:
        for p in self.files[: len(self.files) if n is None else n]:
            iid = f"folder/{p.relative_to(self.root).as_posix()}"
            yield Item(id=iid, image=load_image(p), source=self.name, group=iid)


# --------------------------------------------------------------------------- registry API


def _parse_bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"corpus option {key!r} must be true or false, got {value!r}")


def get_corpus(spec: str, *, seed: int = 0, size: int = 256) -> Corpus:
    """Build a corpus from a spec: ``dead-leaves``, ``dead-leaves:size=512``, ``bundled``,
    ``bundled:crops=false``, ``folder:PATH``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"corpus spec must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    if name not in CORPORA:
        raise UnknownNameError("corpus", name, list(CORPORA))
    if name == "folder":
        if not rest:
            raise ConfigError("corpus spec 'folder' needs a path: folder:PATH")
        return FolderCorpus(seed=seed, size=size, path=rest)
    opts: dict[str, str] = {}
    for part in rest.split(":") if rest else []:
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise ConfigError(f"corpus spec {spec!r}: option {part!r} is not key=value")
        if key in opts:
            raise ConfigError(f"corpus spec {spec!r}: option {key!r} given twice")
        opts[key] = value
    if name == "dead-leaves":
        for key in opts:
            if key != "size":
                raise ConfigError(f"corpus 'dead-leaves': unknown option {key!r} (known: size)")
        if "size" in opts:
            try:
                size = int(opts["size"])
            except ValueError:
                raise ConfigError(f"corpus 'dead-leaves': option 'size' must be an integer, got {opts['size']!r}") from None
        return DeadLeavesCorpus(seed=seed, size=size)
    if name == "bundled":
        for key in opts:
            if key != "crops":
                raise ConfigError(f"corpus 'bundled': unknown option {key!r} (known: crops)")
        crops = _parse_bool("crops", opts["crops"]) if "crops" in opts else True
        return BundledCorpus(seed=seed, size=size, crops=crops)
    if opts:  # a registered corpus without options
        raise ConfigError(f"corpus {name!r} takes no options, got {rest!r}")
    return CORPORA[name](seed=seed, size=size)


def list_corpora() -> list[tuple[str, str]]:
    """(name, description) of every registered corpus, sorted by name."""
    return sorted((name, cls.description) for name, cls in CORPORA.items())


def split_known_benign(
    items: list[Item], n_known: int, n_benign: int, seed: int
) -> tuple[list[Item], list[Item]]:
    """Draw a known set and a benign set that share no group (no crop of a known photo is
    benign). Groups are shuffled by ``seed``; within a group, full photos come before crops.
    Items of the group that fills the known side beyond ``n_known`` are left out of both."""
    for label, value in (("n_known", n_known), ("n_benign", n_benign)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{label} must be an integer >= 0, got {value!r}")
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ConfigError("split_known_benign: item ids are not unique")
    order = list(groups)
    np.random.default_rng(seed).shuffle(order)
    known: list[Item] = []
    benign: list[Item] = []
    for g in order:
        members = sorted(groups[g], key=lambda it: it.is_crop)  # stable: photo first
        if len(known) < n_known:
            known.extend(members[: n_known - len(known)])
        elif len(benign) < n_benign:
            benign.extend(members[: n_benign - len(benign)])
        else:
            break
    if len(known) < n_known or len(benign) < n_benign:
        raise ConfigError(
            f"not enough items for {n_known} known + {n_benign} benign disjoint by group: "
            f"{len(items)} items in {len(groups)} groups"
        )
    return known, benign
