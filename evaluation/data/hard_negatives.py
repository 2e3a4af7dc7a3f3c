"""Benign hard negatives: families of distinct but similar images.

Real false positives come from look-alikes, not from independent pictures: the same scene
shot twice, one meme template with different captions, screenshots of one app around
different content, burst frames, flat low-texture pictures. Each family here is a set of
*different* images (each its own group, so each counts once and a flag on any of them is a
false positive). Some families are built around a list item (``sib``): their members are
benign siblings of a known image, never the known image itself.

Kinds (each member j of a family gets a perturbation magnitude m_j; larger = less similar):

- ``scene``: the base re-shot: shifted by up to 6 m px, exposure x (1 +- 0.06 m), and
  1 + 20 m new occluding disks dropped on it (things moved or added in the scene).
- ``meme``: the base as a template with a top and bottom caption of different words; the
  caption band is 8 % + 17 m % of the height.
- ``screenshot``: one app's chrome (status bar, app bar, bottom bar) around *different*
  content (a fresh dead-leaves image per member) that fills 10 % + 40 m % of the frame's height.
- ``burst``: consecutive frames: frame j is the base shifted by j (1 + 3 m) px with one
  region moved (small motion), so neighbouring frames are the closest pairs.
- ``flat``: low-texture images: a smooth two-colour gradient (angle, colours and a faint
  texture differ by m) — the images whose perceptual hashes are least stable.

The similarity distribution is tunable: m_j = min(1, strength * u_j) with u_j uniform on
[0.05, 1] drawn from the seed, so ``strength`` < 1 makes families tighter (more pairs within a
threshold) and > 1 looser. Everything is deterministic by (seed, family, member).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from e2eebench.protocols.errors import ConfigError

KINDS = ("scene", "meme", "screenshot", "burst", "flat")
SIBLING_KINDS = ("scene", "meme", "burst")   # kinds that make sense around a list item's own pixels
WORDS = ("when", "the", "code", "finally", "works", "me", "monday", "nobody", "cat", "again", "why",
         "every", "time", "weekend", "coffee", "boss", "train", "late", "pizza", "mood", "sure", "wait")


@dataclass(frozen=True)
class HardNegativeConfig:
    """How many hard negatives a run's benign side holds, and how similar they are."""

    fraction: float = 0.0          # share of the benign images that are hard negatives
    family_size: int = 4           # distinct images per family
    sibling_fraction: float = 0.25  # share of families built around a list item (benign siblings)
    strength: float = 1.0          # scales every member's perturbation (smaller = more similar)
    kinds: tuple[str, ...] = KINDS

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1 or not 0 <= self.sibling_fraction <= 1:
            raise ConfigError("hard_negatives.fraction and sibling_fraction must be in [0, 1]")
        if not isinstance(self.family_size, int) or self.family_size < 2:
            raise ConfigError("hard_negatives.family_size must be an integer >= 2")
        if not self.strength > 0:
            raise ConfigError("hard_negatives.strength must be positive")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"hard_negatives.kinds: unknown {bad} (known: {', '.join(KINDS)})")

    @classmethod
    def from_dict(cls, d: dict) -> "HardNegativeConfig":
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(f"unknown key hard_negatives.{k} (known: {', '.join(sorted(known))})")
        d = dict(d)
        if "kinds" in d:
            if not isinstance(d["kinds"], (list, tuple)):
                raise ConfigError("hard_negatives.kinds must be a list of names")
            d["kinds"] = tuple(d["kinds"])
        for k in ("fraction", "sibling_fraction", "strength"):
            if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))):
                raise ConfigError(f"hard_negatives.{k} must be a number")
        return cls(**d)


def is_hard_negative(item_id: str | None) -> bool:
    return bool(item_id) and item_id.startswith("hard/")


def kind_of(item_id: str) -> str:
    """``hard/<kind>/<fam|sib>/...`` -> kind."""
    return item_id.split("/")[1]


def family_of(item_id: str) -> str:
    """The family an item belongs to (its id without the member index)."""
    return item_id.rsplit("/", 1)[0]


def sibling_of(item_id: str) -> str | None:
    """For a sibling of a list item, the known item's id; else None."""
    parts = item_id.split("/", 4)
    return parts[4].rsplit("#", 1)[0] if len(parts) > 4 and parts[2] == "sib" else None


def _rng(seed: int, *key) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32("|".join(map(str, key)).encode())])


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate with edge replication (a re-framed shot, not a black border)."""
    h, w = a.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return a[ys][:, xs]


def _disks(a: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """Drop k occluding disks (radii ~ r^-3 on [2, size/8]) of fresh colours on an image."""
    h, w = a.shape[:2]
    out = a.copy()
    yy, xx = np.mgrid[0:h, 0:w]
    rmin, rmax = 2.0, max(3.0, min(h, w) / 8)
    for _ in range(k):
        u = rng.random()
        r = (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5
        cx, cy = rng.random() * w, rng.random() * h
        col = np.clip(rng.uniform(0.04, 0.96) + rng.normal(0, 0.12, 3), 0, 1) * 255
        x0, x1 = int(max(0, cx - r)), int(min(w, cx + r + 1))
        y0, y1 = int(max(0, cy - r)), int(min(h, cy + r + 1))
        m = (xx[y0:y1, x0:x1] + 0.5 - cx) ** 2 + (yy[y0:y1, x0:x1] + 0.5 - cy) ** 2 <= r * r
        out[y0:y1, x0:x1][m] = col
    return out


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(6, px))
    except TypeError:  # pragma: no cover - Pillow without FreeType sizes
        return ImageFont.load_default()


def scene_variant(base: Image.Image, m: float, rng: np.random.Generator) -> Image.Image:
    a = _arr(base)
    s = int(round(6 * m))
    a = _shift(a, int(rng.integers(-s, s + 1)), int(rng.integers(-s, s + 1)))
    a = a * (1 + rng.uniform(-0.06, 0.06) * m)
    return _img(_disks(a, rng, 1 + int(round(20 * m))))


def meme_variant(base: Image.Image, m: float, rng: np.random.Generator) -> Image.Image:
    img = base.convert("RGB").copy()
    w, h = img.size
    band = max(6, int(h * (0.08 + 0.17 * m)))
    d = ImageDraw.Draw(img)
    font = _font(int(band * 0.8))
    for top in (True, False):
        text = " ".join(WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(2, 5)))).upper()
        box = d.textbbox((0, 0), text, font=font, stroke_width=max(1, band // 12))
        tw = box[2] - box[0]
        x = max(0, (w - tw) // 2)
        y = int(band * 0.1) if top else h - band + int(band * 0.1)
        d.text((x, y), text, fill=(255, 255, 255), font=font, stroke_width=max(1, band // 12),
               stroke_fill=(0, 0, 0))
    return img


def screenshot_variant(chrome_rng_seed: int, content: Image.Image, m: float, size: int) -> Image.Image:
    """One app's chrome (fixed by the family's seed) around ``content``."""
    crng = np.random.default_rng(chrome_rng_seed)
    bg = tuple(int(v) for v in crng.integers(200, 256, 3))
    bar = tuple(int(v) for v in crng.integers(20, 120, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    sb, ab, nb = int(size * 0.04), int(size * 0.10), int(size * 0.09)
    d.rectangle([0, 0, size, sb], fill=(10, 10, 10))
    d.rectangle([0, sb, size, sb + ab], fill=bar)
    d.text((int(size * 0.05), sb + ab // 4), "Chats", fill=(255, 255, 255), font=_font(ab // 2))
    d.rectangle([0, size - nb, size, size], fill=tuple(max(0, c - 30) for c in bg))
    for i in range(4):
        cx = int(size * (0.125 + 0.25 * i))
        d.ellipse([cx - nb // 4, size - nb * 3 // 4, cx + nb // 4, size - nb // 4], fill=bar)
    avail = size - sb - ab - nb
    for i in range(6):  # the app's own chat bubbles: the same in every screenshot of the family
        y0 = sb + ab + int(avail * (0.03 + 0.16 * i))
        left = bool(crng.integers(2))
        bw = int(size * crng.uniform(0.35, 0.7))
        x0 = int(size * 0.04) if left else size - int(size * 0.04) - bw
        d.rounded_rectangle([x0, y0, x0 + bw, y0 + int(avail * 0.11)], radius=max(2, size // 40),
                            fill=bar if left else (250, 250, 250))
    ch = max(8, min(avail, int(size * (0.1 + 0.4 * m))))
    cw = int(ch * content.width / max(1, content.height))
    cw = min(cw, int(size * 0.9))
    top = sb + ab + (avail - ch) // 2
    img.paste(content.convert("RGB").resize((cw, ch), Image.BILINEAR), ((size - cw) // 2, top))
    return img


def burst_frame(base: Image.Image, j: int, m: float, rng: np.random.Generator) -> Image.Image:
    a = _arr(base)
    step = 1 + int(round(3 * m))
    a = _shift(a, j * step, (j * step) // 2)
    if j:  # one region moves a little between frames (someone moving in the shot)
        h, w = a.shape[:2]
        bh, bw = max(4, h // 6), max(4, w // 6)
        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        dy, dx = (int(v) for v in rng.integers(-step, step + 1, 2))
        ys, xs = np.clip(np.arange(y, y + bh) + dy, 0, h - 1), np.clip(np.arange(x, x + bw) + dx, 0, w - 1)
        a[y:y + bh, x:x + bw] = a[ys][:, xs]
    return _img(a)


def flat_image(fam_rng_seed: int, m: float, rng: np.random.Generator, size: int) -> Image.Image:
    f = np.random.default_rng(fam_rng_seed)
    c0, c1 = f.uniform(40, 215, 3), f.uniform(40, 215, 3)
    theta = f.uniform(0, 2 * np.pi) + rng.normal(0, 0.25 * m)
    c0 = c0 + rng.normal(0, 12 * m, 3)
    c1 = c1 + rng.normal(0, 12 * m, 3)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1) - 0.5
    t = np.clip(0.5 + xx * np.cos(theta) + yy * np.sin(theta), 0, 1)[..., None]
    a = c0 * (1 - t) + c1 * t + rng.normal(0, 1.5, (size, size, 1))
    return _img(a)


def _dead_leaves(seed: int, key: str, size: int) -> Image.Image:
    from e2eebench.evaluation.data.corpora import dead_leaves_image
    return Image.fromarray(dead_leaves_image(_rng(seed, "hn-base", key), size), "RGB")


def make_family(kind: str, family: str, base: Image.Image | None, n: int, seed: int, size: int,
                strength: float) -> list[Image.Image]:
    """``n`` distinct images of one family. ``base`` is the template / scene (None: a fresh
    dead-leaves image); a sibling family passes the list item and gets only variants of it."""
    frng = _rng(seed, "hn-family", family)
    ms = np.minimum(1.0, strength * frng.uniform(0.05, 1.0, n))
    if kind == "flat":
        fs = int(frng.integers(2**32))
        return [flat_image(fs, float(ms[j]), _rng(seed, family, j), size) for j in range(n)]
    if kind == "screenshot":
        cs = int(frng.integers(2**32))
        return [screenshot_variant(cs, _dead_leaves(seed, f"{family}/content/{j}", size), float(ms[j]), size)
                for j in range(n)]
    base = base if base is not None else _dead_leaves(seed, family, size)
    out = []
    for j in range(n):
        r = _rng(seed, family, j)
        if kind == "scene":
            out.append(scene_variant(base, float(ms[j]), r))
        elif kind == "meme":
            out.append(meme_variant(base, float(ms[j]), r))
        else:
            out.append(burst_frame(base, j + 1, float(ms[j]), r))
    return out


def hard_negative_items(n: int, known: list, cfg: HardNegativeConfig, seed: int, size: int) -> list:
    """``n`` hard-negative benign items in families of ``cfg.family_size``; a share of the
    families (``sibling_fraction``, as far as there are list items) are siblings of list items."""
    from e2eebench.evaluation.data.corpora import Item
    if n <= 0:
        return []
    rng = _rng(seed, "hn-plan")
    n_fam = -(-n // cfg.family_size)
    n_sib = min(int(round(n_fam * cfg.sibling_fraction)), len(known)) if known else 0
    sib_kinds = [k for k in cfg.kinds if k in SIBLING_KINDS]
    if not sib_kinds:
        n_sib = 0
    sib_items = [known[i] for i in rng.permutation(len(known))[:n_sib]] if n_sib else []
    items: list = []
    for f in range(n_fam):
        k = min(cfg.family_size, n - len(items))
        if f < n_sib:
            kind = sib_kinds[f % len(sib_kinds)]
            it = sib_items[f]
            fam = f"hard/{kind}/sib/{f}/{it.id}"
            imgs = make_family(kind, fam, it.image, k, seed, size, cfg.strength)
            # the "#" keeps the known id recoverable whatever slashes it holds
            ids = [f"hard/{kind}/sib/{f}/{it.id}#{j}" for j in range(k)]
        else:
            kind = cfg.kinds[f % len(cfg.kinds)]
            fam = f"hard/{kind}/fam/{f}"
            imgs = make_family(kind, fam, None, k, seed, size, cfg.strength)
            ids = [f"{fam}/{j}" for j in range(k)]
        items += [Item(id=i, image=im, source="hard-negatives", group=i) for i, im in zip(ids, imgs)]
    return items


def family_key(item_id: str) -> str:
    """Members of one family share this key (sibling ids end in '#j', others in '/j')."""
    return item_id.rsplit("#", 1)[0] if "/sib/" in item_id else family_of(item_id)


def pair_distances(items: list, known: list, hash_fn, bits: int) -> dict[str, np.ndarray]:
    """Hamming distances of every hard-negative pair, by kind: within-family pairs of distinct
    members, and (kind ``sibling``) each sibling against the list item it was made from."""
    hashes = {it.id: np.unpackbits(np.asarray(hash_fn(it.image), np.uint8)) for it in items
              if is_hard_negative(it.id)}
    by_fam: dict[str, list[str]] = {}
    for iid in hashes:
        by_fam.setdefault(family_key(iid), []).append(iid)
    out: dict[str, list[int]] = {}
    for fam, ids in by_fam.items():
        kind = kind_of(ids[0])
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                out.setdefault(kind, []).append(int((hashes[ids[a]] != hashes[ids[b]]).sum()))
    kh = {k.id: k for k in known}
    for iid, h in hashes.items():
        src = sibling_of(iid)
        if src and src in kh:
            out.setdefault("sibling", []).append(
                int((np.unpackbits(np.asarray(hash_fn(kh[src].image), np.uint8)) != h).sum()))
    return {k: np.asarray(v, np.int32) for k, v in out.items()}
