"""Perceptual hashers, as stateless plugins registered by name.

Hashes are packed bit arrays (``np.ndarray[uint8]`` of ``bits // 8`` bytes, most
significant bit first, so ``h.tobytes().hex()`` is the usual hex form: for PDQ it is
the form of Meta's ThreatExchange tools). Distances are Hamming counts computed with
``np.bitwise_count`` over packed arrays, so a scan never unpacks bits.

PDQ comes from ``pdqhash`` (Meta's reference C++); pHash, dHash, aHash and wHash from
``imagehash``. Each hasher has a ``default_threshold``: PDQ's documented operating point
(31 of 256 bits) and, for the 64-bit imagehash family, the conventional 10 bits; the
accuracy module calibrates data-driven thresholds next to these.
"""
from __future__ import annotations

import io
import struct
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, ClassVar, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from e2eebench.protocols.errors import ConfigError, InputError, UnknownNameError


def to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


# An image is decoded in full to be hashed; bigger than this is refused before decoding (a
# 3 kB PNG can declare gigapixels). Pillow's own bomb check only warns below twice its limit.
MAX_PIXELS = 64 * 1024 * 1024
# what Pillow's decoders raise on hostile bytes (a float-typed TIFF tag gives TypeError)
DECODE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
                 TypeError, SyntaxError, EOFError, IndexError, KeyError, ZeroDivisionError,
                 MemoryError, struct.error)


def open_image(source: str | Path | BinaryIO, what: str) -> Image.Image:
    """Decode an image (a path or a binary stream) as RGB; any failure is an InputError naming
    ``what``, never a Pillow exception."""
    try:
        with Image.open(source) as im:
            w, h = im.size
            if w < 1 or h < 1 or w * h > MAX_PIXELS:
                raise InputError(f"{what}: {w}x{h} pixels is outside 1..{MAX_PIXELS:,} (decompression bomb?)")
            im.load()
            return to_rgb(im)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"image not found: {source}") from None
    except DECODE_ERRORS as e:
        raise InputError(f"cannot read {what}: {e.__class__.__name__}") from None


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB; any failure is an InputError naming the file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"not an image file but a folder: {p}")
    return open_image(p, f"image {p}")


def decode_image(data: bytes, what: str = "image") -> Image.Image:
    """Decode image bytes (as they arrive in a message) as RGB; failures are InputError."""
    return open_image(io.BytesIO(bytes(data)), what)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray | int:
    """Hamming distance between packed hashes; broadcasts over leading axes."""
    d = np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64)
    return int(d) if np.ndim(d) == 0 else d


def hamming_matrix(a: np.ndarray, b: np.ndarray, block: int = 4096) -> np.ndarray:
    """All pairwise distances between rows of ``a`` and ``b`` (computed in blocks)."""
    out = np.empty((len(a), len(b)), dtype=np.int32)
    for i in range(0, len(a), block):
        out[i:i + block] = np.bitwise_count(a[i:i + block, None, :] ^ b[None, :, :]).sum(-1)
    return out


def hex_to_hash(text: str, bits: int) -> np.ndarray:
    text = text.strip().lower()
    if len(text) != bits // 4:
        raise InputError(f"hash {text[:16]!r}... has {len(text) * 4} bits, expected {bits}")
    try:
        return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).copy()
    except ValueError:
        raise InputError(f"hash {text[:16]!r}... is not hexadecimal") from None


class Hasher(ABC):
    """A perceptual hash: class-level metadata, pure functions of an image."""

    name: ClassVar[str]
    bits: ClassVar[int]
    default_threshold: ClassVar[int]
    description: ClassVar[str]
    library: ClassVar[str]
    has_quality: ClassVar[bool] = False
    has_features: ClassVar[bool] = False  # real-valued values before binarisation (CKKS, partial hashing)

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    @abstractmethod
    def hash(self, image: Image.Image) -> np.ndarray:
        """Packed hash (uint8[bits // 8])."""

    def hash_many(self, images: Iterable[Image.Image]) -> np.ndarray:
        hs = [self.hash(im) for im in images]
        return np.stack(hs) if hs else np.zeros((0, self.nbytes), np.uint8)

    def quality(self, image: Image.Image) -> int | None:
        return None

    def features(self, image: Image.Image) -> np.ndarray:
        """Real-valued features the bits are thresholded from (for CKKS / partial hashing)."""
        raise ConfigError(f"hasher {self.name} exposes no real-valued features")

    def check(self, h: np.ndarray) -> np.ndarray:
        h = np.asarray(h)
        if h.dtype != np.uint8 or h.shape[-1] != self.nbytes:
            raise InputError(f"{self.name} hash must be {self.nbytes} bytes, got shape {h.shape}")
        return h

    def from_hex(self, text: str) -> np.ndarray:
        return hex_to_hash(text, self.bits)

    def distance(self, a: np.ndarray, b: np.ndarray):
        return hamming(self.check(a), self.check(b))


class PdqHasher(Hasher):
    name = "pdq"
    bits = 256
    default_threshold = 31
    description = "Meta PDQ (pdqhash, reference C++): 256 bits, match <= 31, quality 0-100"
    library = "pdqhash"
    has_quality = True
    has_features = True

    def _compute(self, image: Image.Image):
        import pdqhash
        return pdqhash.compute(np.asarray(to_rgb(image)))

    def hash(self, image: Image.Image) -> np.ndarray:
        bits, _ = self._compute(image)
        return np.packbits(bits.astype(np.uint8))

    def hash_with_quality(self, image: Image.Image) -> tuple[np.ndarray, int]:
        bits, q = self._compute(image)
        return np.packbits(bits.astype(np.uint8)), int(q)

    def quality(self, image: Image.Image) -> int:
        return int(self._compute(image)[1])

    def features(self, image: Image.Image) -> np.ndarray:
        """PDQ's 256 real values before the median threshold (16x16 DCT block)."""
        import pdqhash
        vec, _ = pdqhash.compute_float(np.asarray(to_rgb(image)))
        return np.asarray(vec, dtype=np.float64)


class _ImageHashHasher(Hasher):
    bits = 64
    default_threshold = 10
    library = "imagehash"
    _fn: ClassVar[str]

    def hash(self, image: Image.Image) -> np.ndarray:
        import imagehash
        h = getattr(imagehash, self._fn)(to_rgb(image))
        return np.packbits(np.asarray(h.hash, dtype=np.uint8).ravel())


class PHasher(_ImageHashHasher):
    name, _fn = "phash", "phash"
    has_features = True
    description = "pHash (imagehash): 64-bit DCT sign hash; conventional match <= 10"

    def features(self, image: Image.Image) -> np.ndarray:
        """The 8x8 low-frequency DCT block pHash thresholds at its median, minus the median."""
        import scipy.fft
        px = np.asarray(to_rgb(image).convert("L").resize((32, 32), Image.Resampling.LANCZOS), float)
        dct = scipy.fft.dct(scipy.fft.dct(px, axis=0), axis=1)[:8, :8].ravel()
        return dct - np.median(dct)


class DHasher(_ImageHashHasher):
    name, _fn = "dhash", "dhash"
    description = "dHash (imagehash): 64-bit gradient-sign hash; conventional match <= 10"


class AHasher(_ImageHashHasher):
    name, _fn = "ahash", "average_hash"
    description = "aHash (imagehash): 64-bit mean-threshold hash; conventional match <= 10"


class WHasher(_ImageHashHasher):
    name, _fn = "whash", "whash"
    description = "wHash (imagehash): 64-bit Haar wavelet hash; conventional match <= 10"


HASHERS: dict[str, type[Hasher]] = {}


def register_hasher(cls: type[Hasher]) -> type[Hasher]:
    """Add a hasher class; its metadata is validated so a broken plugin fails at import."""
    for attr in ("name", "bits", "default_threshold", "description", "library"):
        if not hasattr(cls, attr):
            raise TypeError(f"hasher {cls.__name__} lacks class attribute {attr!r}")
    if cls.bits % 8 or not 0 <= cls.default_threshold <= cls.bits:
        raise TypeError(f"hasher {cls.name}: bits must be a multiple of 8 and threshold in range")
    if cls.name in HASHERS:
        raise TypeError(f"hasher name {cls.name!r} registered twice")
    HASHERS[cls.name] = cls
    return cls


for _cls in (PdqHasher, PHasher, DHasher, AHasher, WHasher):
    register_hasher(_cls)


def get_hasher(name: str) -> Hasher:
    try:
        return HASHERS[name]()
    except KeyError:
        raise UnknownNameError("hasher", name, list(HASHERS)) from None


def list_hashers() -> list[Hasher]:
    return [cls() for cls in HASHERS.values()]


def parse_hasher_list(text: str | Sequence[str]) -> list[Hasher]:
    names = text.split(",") if isinstance(text, str) else list(text)
    return [get_hasher(n.strip()) for n in names if n.strip()]
