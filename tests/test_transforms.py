"""Transforms: grammar, determinism, effect of every family, typed errors, PDQ sanity."""
from __future__ import annotations

import numpy as np
import pdqhash
import pytest
from PIL import Image

from e2eebench.evaluation.data.corpora import get_corpus
from e2eebench.evaluation.data.transforms import (
    OFFENDER_MIX,
    STANDARD_SUITE,
    TRANSFORMS,
    list_transforms,
    parse_transform,
    sample_offender_transforms,
)
from e2eebench.protocols.errors import ConfigError, UnknownNameError

PDQ_MATCH_THRESHOLD = 31  # PDQ's published match distance (see REFERENCES)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return get_corpus("bundled:crops=false").items(1)[0].image  # the astronaut, 512 x 512


@pytest.fixture(scope="module")
def small() -> Image.Image:
    return get_corpus("dead-leaves:size=96", seed=5).items(1)[0].image


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_registry_has_all_families_with_metadata() -> None:
    expected = {"identity", "jpeg", "resize", "crop", "pad", "rotate", "flip", "gamma", "brightness",
                "contrast", "blur", "noise", "watermark", "grayscale", "aspect", "screenshot", "sharpen"}
    assert expected <= set(TRANSFORMS)
    assert [n for n, _ in list_transforms()] == sorted(TRANSFORMS)
    for fam in TRANSFORMS.values():
        names = [p.name for p in fam.params]
        assert fam.strength_param is None or fam.strength_param in names
        for p in fam.params:
            if p.kind in ("float", "int"):
                p.check_range(fam.name, p.default)  # defaults are valid


@pytest.mark.parametrize("spec, canonical", [
    ("jpeg:50", "jpeg:q=50"),
    ("jpeg:q=50", "jpeg:q=50"),
    ("jpeg", "jpeg:q=75"),
    ("resize:0.5", "resize:scale=0.5"),
    ("crop:0.1:offset", "crop:frac=0.1:mode=offset"),
    ("crop:mode=centre:frac=0.05", "crop:frac=0.05"),
    ("rotate:4:expand", "rotate:deg=4:expand"),
    ("rotate:expand=false:4", "rotate:deg=4"),
    ("flip:v", "flip:dir=v"),
    ("pad:0.2:white", "pad:frac=0.2:colour=white"),
    ("watermark:0.3:logo", "watermark:opacity=0.3:kind=logo"),
    ("resize:0.5+jpeg:q=70", "resize:scale=0.5+jpeg:q=70"),
])
def test_round_trip(spec: str, canonical: str) -> None:
    t = parse_transform(spec)
    assert t.spec == canonical
    assert parse_transform(t.spec) == t and parse_transform(t.spec).spec == canonical


def test_family_and_strength() -> None:
    chain = parse_transform("resize:0.5+jpeg:q=70")
    assert chain.family == "resize+jpeg" and chain.strength == 0.5
    assert parse_transform("jpeg:q=95").strength == 95.0
    assert parse_transform("identity").strength == 0.0


def test_suites_are_canonical_and_cover_every_family() -> None:
    assert [parse_transform(s).spec for s in STANDARD_SUITE] == STANDARD_SUITE
    assert sorted(parse_transform(s).family for s in STANDARD_SUITE) == sorted(TRANSFORMS)
    assert abs(sum(w for _, w in OFFENDER_MIX) - 1.0) < 1e-9
    for spec, w in OFFENDER_MIX:
        parse_transform(spec)
        assert w > 0
    drawn = sample_offender_transforms(50, seed=3)
    assert [t.spec for t in drawn] == [t.spec for t in sample_offender_transforms(50, seed=3)]


@pytest.mark.parametrize("spec", STANDARD_SUITE)
def test_every_family_changes_the_image_and_identity_does_not(spec: str, small: Image.Image) -> None:
    out = parse_transform(spec).apply(small, seed=0)
    assert out.mode == "RGB"
    if spec == "identity":
        assert _same(out, small) and out is not small
    else:
        assert not _same(out, small)


@pytest.mark.parametrize("spec", ["noise:0.05", "crop:0.1:offset", "watermark", "watermark:kind=logo",
                                  "screenshot", "resize:0.5+noise:0.05+crop:0.1:offset"])
def test_seeded_transforms_are_deterministic(spec: str, small: Image.Image) -> None:
    t = parse_transform(spec)
    a, b = t.apply(small, seed=7), t.apply(small, seed=7)
    assert _same(a, b)
    assert any(not _same(a, t.apply(small, seed=s)) for s in range(8, 14))


def test_geometry(small: Image.Image) -> None:
    w, h = small.size
    assert parse_transform("resize:0.5").apply(small).size == (w // 2, h // 2)
    assert parse_transform("resize:2").apply(small).size == (2 * w, 2 * h)
    assert parse_transform("rotate:4").apply(small).size == (w, h)
    ew, eh = parse_transform("rotate:4:expand").apply(small).size
    assert ew > w and eh > h
    assert parse_transform("crop:0.1").apply(small).size == (w - 2 * round(0.1 * w), h - 2 * round(0.1 * h))
    assert parse_transform("crop:0.1:offset").apply(small, seed=1).size == parse_transform("crop:0.1").apply(small).size
    assert parse_transform("pad:0.2").apply(small).size == (w + 2 * round(0.2 * w), h + 2 * round(0.2 * h))
    assert parse_transform("aspect:1.5").apply(small).size == (round(1.5 * w), h)
    assert _same(parse_transform("flip+flip").apply(small), small)
    grey = np.asarray(parse_transform("grayscale").apply(small)).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1


@pytest.mark.parametrize("spec, word", [
    ("jpeg:q=101", "'q'"), ("jpeg:q=abc", "'q'"), ("jpeg:q=50.5", "'q'"), ("jpeg:quality=50", "quality"),
    ("jpeg:50:60", "60"), ("crop:0.9", "'frac'"), ("resize:0", "'scale'"), ("rotate:nan", "'deg'"),
    ("crop:0.1:sideways", "'mode'"), ("jpeg:q=50:q=60", "'q'"), ("watermark:text=a=b", "'text'"),
])
def test_bad_parameters_raise_config_error(spec: str, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        parse_transform(spec)


@pytest.mark.parametrize("spec", ["", "  ", "jpeg+", "+jpeg", "jpeg:", "jpeg:q=50,resize:0.5", ":50"])
def test_malformed_specs_raise_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_transform(spec)


def test_unknown_family() -> None:
    with pytest.raises(UnknownNameError, match="transform"):
        parse_transform("sepia:0.5")
    with pytest.raises(UnknownNameError):
        parse_transform("resize:0.5+sepia")


def test_pdq_distance_small_after_jpeg95_large_after_crop20(photo: Image.Image) -> None:
    def pdq(im: Image.Image) -> np.ndarray:
        return pdqhash.compute(np.asarray(im))[0].astype(bool)

    base = pdq(photo)
    d_jpeg = int((base != pdq(parse_transform("jpeg:q=95").apply(photo))).sum())
    d_crop = int((base != pdq(parse_transform("crop:0.2").apply(photo))).sum())
    assert d_jpeg <= PDQ_MATCH_THRESHOLD < d_crop
    assert d_jpeg < d_crop
