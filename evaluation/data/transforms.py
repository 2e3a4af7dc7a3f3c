"""Named, parameterised, deterministic image edits.

Grammar (no commas: CLI lists are comma-separated)::

    spec   := step ("+" step)*
    step   := family (":" arg)*
    arg    := value | key "=" value

Bare args are matched first against flag names (``rotate:4:expand``), then against the
choices of a choice parameter (``crop:0.1:offset``, ``flip:v``), and otherwise fill the
family's parameters in declared order (``jpeg:50`` == ``jpeg:q=50``). ``Transform.spec``
prints the canonical form (the strength parameter always, others only when not default), so
``parse_transform(t.spec) == t``.

Everything random (noise, offset crops, watermark position, screenshot chrome) is drawn
from ``numpy.random.default_rng`` seeded by the ``seed`` passed to ``apply``: the same spec,
image and seed always give the same pixels.
"""
from __future__ import annotations

import io
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from e2eebench.protocols.errors import ConfigError, UnknownNameError

Value = float | int | str | bool


@dataclass(frozen=True)
class Param:
    """One parameter of a family: kind is 'float', 'int', 'choice', 'flag' or 'text'."""

    name: str
    kind: str
    default: Value
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def parse(self, family: str, raw: str) -> Value:
        """Turn the spec text into a checked value, or raise ConfigError naming the parameter."""
        where = f"transform {family!r}: parameter {self.name!r}"
        if self.kind in ("float", "int"):
            try:
                v = float(raw)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {raw!r}") from None
            if not math.isfinite(v):
                raise ConfigError(f"{where} must be finite, got {raw!r}")
            if self.kind == "int":
                if v != int(v):
                    raise ConfigError(f"{where} must be an integer, got {raw!r}")
                v = int(v)
            self.check_range(family, v)
            return v
        if self.kind == "choice":
            if raw not in self.choices:
                raise ConfigError(f"{where} must be one of {'|'.join(self.choices)}, got {raw!r}")
            return raw
        if self.kind == "flag":
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where} must be true or false, got {raw!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,40}", raw):
            raise ConfigError(f"{where} must be 1-40 letters, digits, '_', '.' or '-', got {raw!r}")
        return raw

    def check_range(self, family: str, v: float) -> None:
        where = f"transform {family!r}: parameter {self.name!r}"
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or v <= self.hi
        if not (lo_ok and hi_ok):
            lb = "(" if self.lo_open else "["
            raise ConfigError(f"{where} must be in {lb}{self.lo}, {self.hi}], got {v:g}")

    def render(self, v: Value) -> str:
        if self.kind == "flag":
            return self.name if v else f"{self.name}=false"
        if self.kind == "float":
            s = repr(float(v))
            return f"{self.name}={s[:-2] if s.endswith('.0') else s}"
        return f"{self.name}={v}"


class Family(ABC):
    """A kind of edit; subclasses carry the metadata and the pixel work."""

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    strength_param: ClassVar[str | None] = None
    fixed_strength: ClassVar[float] = 1.0  # for families without a numeric parameter

    @staticmethod
    @abstractmethod
    def run(image: Image.Image, p: dict[str, Any], rng: np.random.Generator) -> Image.Image:
        """Apply the edit to an RGB image."""


TRANSFORMS: dict[str, type[Family]] = {}


def register_transform(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family available by its ``name``."""
    TRANSFORMS[cls.name] = cls
    return cls


# --------------------------------------------------------------------------- helpers


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(6, px))
    except (TypeError, OSError, ImportError):  # Pillow built without FreeType
        return ImageFont.load_default()


_COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}

# --------------------------------------------------------------------------- families


@register_transform
class Identity(Family):
    name = "identity"
    description = "no change (the exact copy, e.g. a forwarded file)"
    fixed_strength = 0.0

    @staticmethod
    def run(image, p, rng):
        return image.copy()


@register_transform
class Jpeg(Family):
    name = "jpeg"
    description = "re-encode as JPEG at quality q (Pillow/libjpeg, 4:2:0 chroma)"
    params = (Param("q", "int", 75, 1, 100, help="JPEG quality"),)
    strength_param = "q"

    @staticmethod
    def run(image, p, rng):
        return _jpeg(image, p["q"])


@register_transform
class Resize(Family):
    name = "resize"
    description = "scale both sides by a factor (<1 down, >1 up); output keeps the new size"
    params = (Param("scale", "float", 0.5, 0.0, 8.0, lo_open=True, help="scale factor"),)
    strength_param = "scale"

    @staticmethod
    def run(image, p, rng):
        w, h = image.size
        size = (max(1, round(w * p["scale"])), max(1, round(h * p["scale"])))
        return image.resize(size, Image.Resampling.LANCZOS)


@register_transform
class Crop(Family):
    name = "crop"
    description = "remove a fraction of each side; 'offset' shifts the window asymmetrically by seed"
    params = (
        Param("frac", "float", 0.05, 0.0, 0.45, help="fraction removed per side"),
        Param("mode", "choice", "centre", choices=("centre", "offset")),
    )
    strength_param = "frac"

    @staticmethod
    def run(image, p, rng):
        w, h = image.size
        tw, th = 2 * round(p["frac"] * w), 2 * round(p["frac"] * h)  # total removed per axis
        if p["mode"] == "offset":
            left, top = int(rng.integers(0, tw + 1)), int(rng.integers(0, th + 1))
        else:
            left, top = tw // 2, th // 2
        return image.crop((left, top, max(left + 1, w - (tw - left)), max(top + 1, h - (th - top))))


@register_transform
class Pad(Family):
    name = "pad"
    description = "add a plain border of a fraction of the width/height per side"
    params = (
        Param("frac", "float", 0.2, 0.0, 2.0, help="border per side, fraction of the side"),
        Param("colour", "choice", "black", choices=("black", "white", "gray")),
        Param("sides", "choice", "all", choices=("all", "tb", "lr")),
    )
    strength_param = "frac"

    @staticmethod
    def run(image, p, rng):
        w, h = image.size
        bx = 0 if p["sides"] == "tb" else round(p["frac"] * w)
        by = 0 if p["sides"] == "lr" else round(p["frac"] * h)
        return ImageOps.expand(image, border=(bx, by, bx, by), fill=_COLOURS[p["colour"]])


@register_transform
class Rotate(Family):
    name = "rotate"
    description = "rotate counter-clockwise by degrees; 'expand' grows the canvas, else corners are lost"
    params = (
        Param("deg", "float", 4.0, -360.0, 360.0, help="degrees"),
        Param("expand", "flag", False, help="grow the canvas to keep the whole picture"),
    )
    strength_param = "deg"

    @staticmethod
    def run(image, p, rng):
        return image.rotate(p["deg"], resample=Image.Resampling.BICUBIC, expand=p["expand"], fillcolor=(0, 0, 0))


@register_transform
class Flip(Family):
    name = "flip"
    description = "mirror horizontally (h) or vertically (v)"
    params = (Param("dir", "choice", "h", choices=("h", "v")),)

    @staticmethod
    def run(image, p, rng):
        return ImageOps.mirror(image) if p["dir"] == "h" else ImageOps.flip(image)


@register_transform
class Gamma(Family):
    name = "gamma"
    description = "gamma curve out = in^g (g > 1 darkens mid-tones)"
    params = (Param("g", "float", 2.0, 0.0, 20.0, lo_open=True, help="gamma exponent"),)
    strength_param = "g"

    @staticmethod
    def run(image, p, rng):
        lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** p["g"]), 0, 255).astype(np.uint8)
        return image.point(lut.tolist() * 3)


@register_transform
class Brightness(Family):
    name = "brightness"
    description = "multiply brightness by a factor (PIL ImageEnhance)"
    params = (Param("factor", "float", 1.3, 0.0, 10.0),)
    strength_param = "factor"

    @staticmethod
    def run(image, p, rng):
        return ImageEnhance.Brightness(image).enhance(p["factor"])


@register_transform
class Contrast(Family):
    name = "contrast"
    description = "scale contrast around the mean grey by a factor (PIL ImageEnhance)"
    params = (Param("factor", "float", 1.3, 0.0, 10.0),)
    strength_param = "factor"

    @staticmethod
    def run(image, p, rng):
        return ImageEnhance.Contrast(image).enhance(p["factor"])


@register_transform
class Blur(Family):
    name = "blur"
    description = "Gaussian blur with standard deviation 'radius' pixels"
    params = (Param("radius", "float", 2.0, 0.0, 100.0),)
    strength_param = "radius"

    @staticmethod
    def run(image, p, rng):
        return image.filter(ImageFilter.GaussianBlur(p["radius"]))


@register_transform
class Noise(Family):
    name = "noise"
    description = "additive Gaussian noise per pixel and channel, sigma as a fraction of 255 (seeded)"
    params = (Param("sigma", "float", 0.02, 0.0, 1.0),)
    strength_param = "sigma"

    @staticmethod
    def run(image, p, rng):
        arr = np.asarray(image, dtype=np.float32)
        arr = arr + rng.normal(0.0, p["sigma"] * 255.0, arr.shape).astype(np.float32)
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB")


@register_transform
class Watermark(Family):
    name = "watermark"
    description = "semi-transparent text or logo overlay at a seeded position"
    params = (
        Param("opacity", "float", 0.5, 0.0, 1.0),
        Param("kind", "choice", "text", choices=("text", "logo")),
        Param("size", "float", 0.25, 0.02, 1.0, help="mark width as a fraction of image width"),
        Param("text", "text", "sample", help="the text of a text mark"),
    )
    strength_param = "opacity"

    @staticmethod
    def run(image, p, rng):
        w, h = image.size
        layer = Image.new("L", image.size, 0)
        draw = ImageDraw.Draw(layer)
        mw = max(4, round(p["size"] * w))
        if p["kind"] == "text":
            font = _font(max(6, round(mw / max(1, len(p["text"])) * 1.6)))
            x0, y0, x1, y1 = draw.textbbox((0, 0), p["text"], font=font)
            tw, th = x1 - x0, y1 - y0
        else:
            tw = th = mw
        x = int(rng.integers(0, max(1, w - tw) + 1)) - (x0 if p["kind"] == "text" else 0)
        y = int(rng.integers(0, max(1, h - th) + 1)) - (y0 if p["kind"] == "text" else 0)
        if p["kind"] == "text":
            draw.text((x, y), p["text"], fill=255, font=font)
        else:  # a ring around a square: a plain stand-in for a brand mark
            draw.ellipse((x, y, x + tw, y + th), outline=255, width=max(1, tw // 10))
            q = tw // 4
            draw.rectangle((x + q + q // 2, y + q + q // 2, x + tw - q - q // 2, y + th - q - q // 2), fill=255)
        alpha = layer.point(lambda v: round(v * p["opacity"]))
        white = Image.new("RGB", image.size, (255, 255, 255))
        return Image.composite(white, image, alpha)


@register_transform
class Grayscale(Family):
    name = "grayscale"
    description = "desaturate towards luminance (amount 1 = fully grey, still 3 channels)"
    params = (Param("amount", "float", 1.0, 0.0, 1.0),)
    strength_param = "amount"

    @staticmethod
    def run(image, p, rng):
        grey = image.convert("L").convert("RGB")
        return Image.blend(image, grey, p["amount"])


@register_transform
class Aspect(Family):
    name = "aspect"
    description = "stretch one axis by a ratio (x: width, y: height)"
    params = (
        Param("ratio", "float", 1.25, 0.1, 10.0),
        Param("axis", "choice", "x", choices=("x", "y")),
    )
    strength_param = "ratio"

    @staticmethod
    def run(image, p, rng):
        w, h = image.size
        if p["axis"] == "x":
            size = (max(1, round(w * p["ratio"])), h)
        else:
            size = (w, max(1, round(h * p["ratio"])))
        return image.resize(size, Image.Resampling.BICUBIC)


@register_transform
class Screenshot(Family):
    name = "screenshot"
    description = "phone screenshot of a chat: downscale, status/app/input bars and margins, JPEG re-encode"
    params = (
        Param("scale", "float", 0.8, 0.05, 2.0, help="image scale on screen"),
        Param("q", "int", 85, 1, 100, help="JPEG quality of the saved screenshot"),
    )
    strength_param = "scale"

    @staticmethod
    def run(image, p, rng):
        w, h = image.size
        img = image.resize((max(1, round(w * p["scale"])), max(1, round(h * p["scale"]))), Image.Resampling.BILINEAR)
        iw, ih = img.size
        dark = bool(rng.random() < 0.4)
        bg = (18, 18, 20) if dark else (236, 229, 221)
        bar = (32, 34, 38) if dark else (0, 94, 84)
        status, appbar, inputbar = max(4, ih // 24), max(6, ih // 10), max(6, ih // 9)
        margin = max(2, iw // 14)
        cw = iw + 2 * margin
        ch = status + appbar + ih + 2 * margin + inputbar
        canvas = Image.new("RGB", (cw, ch), bg)
        d = ImageDraw.Draw(canvas)
        d.rectangle((0, 0, cw, status + appbar), fill=bar)
        light = (230, 230, 230)
        for k in range(int(rng.integers(2, 5))):  # status icons on the right
            x = cw - (k + 1) * max(3, status)
            d.rectangle((x, status // 4, x + max(1, status // 2), status - status // 4), fill=light)
        d.ellipse((margin, status + appbar // 5, margin + appbar * 3 // 5, status + appbar * 4 // 5), fill=light)
        tw = int(rng.integers(cw // 5, cw // 2 + 1))
        d.rectangle((margin + appbar, status + appbar * 2 // 5, margin + appbar + tw, status + appbar * 3 // 5), fill=light)
        top = status + appbar + margin
        offset = int(rng.integers(0, margin + 1))  # bubble a little off-centre
        canvas.paste(img, (offset, top))
        y = ch - inputbar
        d.rectangle((0, y, cw, ch), fill=bar)
        d.rounded_rectangle((margin, y + inputbar // 5, cw - margin - inputbar, ch - inputbar // 5),
                            radius=max(1, inputbar // 3), fill=(250, 250, 250) if not dark else (60, 60, 64))
        return _jpeg(canvas, p["q"])


@register_transform
class Sharpen(Family):
    name = "sharpen"
    description = "unsharp mask (radius 2 px) with the given amount (1 = 100 %)"
    params = (Param("amount", "float", 2.0, 0.0, 20.0),)
    strength_param = "amount"

    @staticmethod
    def run(image, p, rng):
        return image.filter(ImageFilter.UnsharpMask(radius=2, percent=round(p["amount"] * 100), threshold=0))


# --------------------------------------------------------------------------- Transform objects


class Transform(ABC):
    """A parsed, canonical edit (one step or a chain)."""

    @property
    @abstractmethod
    def spec(self) -> str: ...

    @property
    @abstractmethod
    def family(self) -> str: ...

    @property
    @abstractmethod
    def strength(self) -> float: ...

    @abstractmethod
    def apply(self, image: Image.Image, seed: int = 0) -> Image.Image: ...

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"parse_transform({self.spec!r})"

    def __str__(self) -> str:
        return self.spec


class Step(Transform):
    """One family with all its parameter values filled in."""

    def __init__(self, family_cls: type[Family], values: dict[str, Value]) -> None:
        self.family_cls = family_cls
        self.values = dict(values)

    @property
    def spec(self) -> str:
        parts = [self.family_cls.name]
        for prm in self.family_cls.params:
            v = self.values[prm.name]
            if prm.name == self.family_cls.strength_param or v != prm.default:
                parts.append(prm.render(v))
        return ":".join(parts)

    @property
    def family(self) -> str:
        return self.family_cls.name

    @property
    def strength(self) -> float:
        sp = self.family_cls.strength_param
        return float(self.values[sp]) if sp else float(self.family_cls.fixed_strength)

    def apply(self, image: Image.Image, seed: int = 0) -> Image.Image:
        return self._apply(image, np.random.default_rng(int(seed)))

    def _apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        src = image if image.mode == "RGB" else image.convert("RGB")
        out = self.family_cls.run(src, self.values, rng)
        return out if out.mode == "RGB" else out.convert("RGB")


class Chain(Transform):
    """Steps applied left to right; step k draws from the stream (seed, k)."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps = tuple(steps)

    @property
    def spec(self) -> str:
        return "+".join(s.spec for s in self.steps)

    @property
    def family(self) -> str:
        return "+".join(s.family for s in self.steps)

    @property
    def strength(self) -> float:
        """The first step's strength: a chain is named after its main (first) edit."""
        return self.steps[0].strength

    def apply(self, image: Image.Image, seed: int = 0) -> Image.Image:
        out = image
        for k, step in enumerate(self.steps):
            out = step._apply(out, np.random.default_rng([int(seed), k]))
        return out


def _parse_step(text: str) -> Step:
    head, *args = text.split(":")
    name = head.strip()
    if not name:
        raise ConfigError(f"transform spec {text!r}: missing family name")
    if name not in TRANSFORMS:
        raise UnknownNameError("transform", name, list(TRANSFORMS))
    fam = TRANSFORMS[name]
    by_name = {p.name: p for p in fam.params}
    values: dict[str, Value] = {}
    positional: list[str] = []
    for arg in args:
        arg = arg.strip()
        if not arg:
            raise ConfigError(f"transform spec {text!r}: empty argument")
        if "=" in arg:
            key, _, raw = arg.partition("=")
            if key not in by_name:
                known = ", ".join(by_name) or "none"
                raise ConfigError(f"transform {name!r}: unknown parameter {key!r} (known: {known})")
            if key in values:
                raise ConfigError(f"transform {name!r}: parameter {key!r} given twice")
            values[key] = by_name[key].parse(name, raw)
            continue
        flag = by_name.get(arg)
        if flag is not None and flag.kind == "flag":
            if arg in values:
                raise ConfigError(f"transform {name!r}: parameter {arg!r} given twice")
            values[arg] = True
            continue
        owners = [p for p in fam.params if p.kind == "choice" and arg in p.choices]
        if len(owners) == 1:
            if owners[0].name in values:
                raise ConfigError(f"transform {name!r}: parameter {owners[0].name!r} given twice")
            values[owners[0].name] = arg
            continue
        positional.append(arg)
    slots = [p for p in fam.params if p.kind != "flag" and p.name not in values]
    for arg in positional:
        if not slots:
            raise ConfigError(f"transform {name!r}: unexpected argument {arg!r}")
        prm = slots.pop(0)
        values[prm.name] = prm.parse(name, arg)
    for prm in fam.params:
        values.setdefault(prm.name, prm.default)
    return Step(fam, values)


def parse_transform(spec: str) -> Transform:
    """Parse ``family[:arg...]`` or a ``+``-joined chain into a :class:`Transform`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"transform spec must be a non-empty string, got {spec!r}")
    if "," in spec:
        raise ConfigError(f"transform spec {spec!r}: commas are not allowed (lists are comma-separated)")
    parts = spec.strip().split("+")
    if any(not p.strip() for p in parts):
        raise ConfigError(f"transform spec {spec!r}: empty step in chain")
    steps = tuple(_parse_step(p.strip()) for p in parts)
    return steps[0] if len(steps) == 1 else Chain(steps)


def list_transforms() -> list[tuple[str, str]]:
    """(name, description) of every registered family, sorted by name."""
    return sorted((n, c.description) for n, c in TRANSFORMS.items())


# --------------------------------------------------------------------------- suites

# One spec per family. The first nine follow the transforms of Thorn's perception benchmark
# (jpeg95, resize0.5, blur, gamma, watermark, noise, rotate4, crop0.05, pad0.2); their exact
# settings there are not all in hand, so these strengths are comparable, not identical.
STANDARD_SUITE: list[str] = [
    "identity",
    "jpeg:q=95",
    "resize:scale=0.5",
    "blur:radius=2",
    "gamma:g=2",
    "watermark:opacity=0.5",
    "noise:sigma=0.02",
    "rotate:deg=4",
    "crop:frac=0.05",
    "pad:frac=0.2",
    "flip",
    "brightness:factor=1.3",
    "contrast:factor=1.3",
    "grayscale:amount=1",
    "aspect:ratio=1.25",
    "screenshot:scale=0.8",
    "sharpen:amount=2",
]

# What happens to an offender's shared copy before it is sent again: modelled, not measured.
# Mostly messenger re-encoding and downscaling, some exact forwards, a minority of crops,
# screenshots and light edits. Weights sum to 1.
OFFENDER_MIX: list[tuple[str, float]] = [
    ("jpeg:q=85", 0.22),
    ("resize:0.5+jpeg:q=75", 0.18),
    ("identity", 0.12),
    ("jpeg:q=60", 0.08),
    ("resize:0.75+jpeg:q=80", 0.08),
    ("screenshot", 0.08),
    ("crop:0.05:offset+jpeg:q=85", 0.06),
    ("crop:0.1:offset+jpeg:q=85", 0.04),
    ("flip+jpeg:q=85", 0.03),
    ("watermark+jpeg:q=85", 0.03),
    ("pad:0.1+jpeg:q=85", 0.02),
    ("rotate:3+jpeg:q=85", 0.02),
    ("brightness:1.2+jpeg:q=85", 0.02),
    ("aspect:1.1+jpeg:q=85", 0.02),
]


def sample_offender_transforms(n: int, seed: int) -> list[Transform]:
    """Draw ``n`` transforms from :data:`OFFENDER_MIX` (seeded)."""
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be an integer >= 0, got {n!r}")
    specs = [s for s, _ in OFFENDER_MIX]
    w = np.array([x for _, x in OFFENDER_MIX], dtype=float)
    parsed = [parse_transform(s) for s in specs]
    picks = np.random.default_rng(seed).choice(len(specs), size=n, p=w / w.sum())
    return [parsed[i] for i in picks]


__all__: list[str] = [
    "Param", "Family", "Transform", "Step", "Chain", "TRANSFORMS", "register_transform",
    "parse_transform", "list_transforms", "STANDARD_SUITE", "OFFENDER_MIX",
    "sample_offender_transforms",
]
