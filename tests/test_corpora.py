"""Corpora: determinism, distinctness, bundled photos, folders, and the known/benign split."""
from __future__ import annotations

import numpy as np
import pdqhash
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from e2eebench.evaluation.data.corpora import (
    CORPORA,
    BundledCorpus,
    Item,
    get_corpus,
    list_corpora,
    split_known_benign,
)
from e2eebench.protocols.errors import ConfigError, InputError, UnknownNameError


def _arr(item: Item) -> np.ndarray:
    return np.asarray(item.image)


def test_registry_metadata() -> None:
    names = [n for n, _ in list_corpora()]
    assert {"dead-leaves", "bundled", "folder"} <= set(names)
    for cls in CORPORA.values():
        assert cls.description and isinstance(cls.finite, bool)


def test_dead_leaves_item_independent_of_n_and_seeded() -> None:
    a = get_corpus("dead-leaves:size=64", seed=3).items(2)
    b = get_corpus("dead-leaves:size=64", seed=3).items(5)
    c = get_corpus("dead-leaves:size=64", seed=4).items(2)
    for x, y in zip(a, b):
        assert x.id == y.id and np.array_equal(_arr(x), _arr(y))
    assert not np.array_equal(_arr(a[0]), _arr(c[0]))
    assert a[0].image.mode == "RGB" and a[0].image.size == (64, 64)
    assert [it.id for it in b] == [it.id for it in get_corpus("dead-leaves:size=64", seed=3).iter_items(5)]


def test_dead_leaves_size_argument_and_spec_override() -> None:
    assert get_corpus("dead-leaves", size=48).items(1)[0].image.size == (48, 48)
    assert get_corpus("dead-leaves:size=40", size=48).items(1)[0].image.size == (40, 40)


def _min_pdq_distance(items: list[Item]) -> int:
    hashes = np.array([pdqhash.compute(_arr(it))[0] for it in items], dtype=bool)
    packed = np.packbits(hashes, axis=1)
    dist = np.bitwise_count(packed[:, None, :] ^ packed[None, :, :]).sum(axis=2)
    np.fill_diagonal(dist, 256)
    return int(dist.min())


def test_dead_leaves_pdq_pairwise_far_apart() -> None:
    """200 items: no two within PDQ's match threshold (31). 128 px keeps the run short."""
    items = get_corpus("dead-leaves:size=128", seed=0).items(200)
    assert _min_pdq_distance(items) > 31
    assert len({it.id for it in items}) == 200 == len({it.group for it in items})


@pytest.mark.slow
def test_dead_leaves_pdq_pairwise_far_apart_default_size() -> None:
    assert _min_pdq_distance(get_corpus("dead-leaves", seed=1).items(200)) > 31


def _spectral_slope(gray: np.ndarray) -> float:
    """Log-log slope of the power spectrum over mid frequencies (natural photos: about -2)."""
    g = gray - gray.mean()
    n = g.shape[0]
    power = np.abs(np.fft.fft2(g * np.outer(np.hanning(n), np.hanning(n)))) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    band = (f > 4 / n) & (f < 0.25)
    return float(np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0])


def test_dead_leaves_has_natural_power_spectrum() -> None:
    slopes = [_spectral_slope(_arr(it).astype(float).mean(axis=2)) for it in get_corpus("dead-leaves:size=128").items(6)]
    assert -3.0 < float(np.mean(slopes)) < -1.6
    white = np.random.default_rng(0).random((128, 128))
    assert _spectral_slope(white) > -0.5  # the measure tells white noise apart


def test_bad_specs_raise_typed_errors() -> None:
    with pytest.raises(UnknownNameError):
        get_corpus("no-such-corpus")
    for spec in ["", "dead-leaves:size", "dead-leaves:size=abc", "dead-leaves:size=4",
                 "dead-leaves:colour=1", "bundled:crops=maybe", "folder:"]:
        with pytest.raises(ConfigError):
            get_corpus(spec)
    with pytest.raises(ConfigError):
        get_corpus("dead-leaves").items()  # unbounded: n is required
    with pytest.raises(ConfigError):
        get_corpus("dead-leaves").items(-1)


def test_bundled_photos_are_distinct_rgb_and_tiles_rebuild_their_photo() -> None:
    corpus = get_corpus("bundled")
    items = corpus.items()
    assert len(items) == len(corpus)
    photos = [it for it in items if not it.is_crop]
    assert len(photos) >= 12
    assert all(it.image.mode == "RGB" for it in items)
    # No pixel-identical photos (PyWavelets' camera duplicates scikit-image's).
    digests = {(_arr(p).shape, _arr(p).tobytes()) for p in photos}
    assert len(digests) == len(photos)
    by_group = {p.group: p for p in photos}
    tiles: dict[str, list[Item]] = {}
    for it in items:
        if it.is_crop:
            assert it.group in by_group
            tiles.setdefault(it.group, []).append(it)
    assert tiles, "expected some photos to yield tiles"
    for group, ts in tiles.items():
        k = int(round(len(ts) ** 0.5))
        assert k * k == len(ts)
        rows = [np.concatenate([_arr(t) for t in ts[r * k:(r + 1) * k]], axis=1) for r in range(k)]
        assert np.array_equal(np.concatenate(rows, axis=0), _arr(by_group[group]))  # non-overlapping, exact


def test_bundled_finite_bounds() -> None:
    corpus = get_corpus("bundled:crops=false")
    assert isinstance(corpus, BundledCorpus)
    n = len(corpus)
    assert all(not it.is_crop for it in corpus.items())
    with pytest.raises(ConfigError, match=str(n)):
        corpus.items(n + 1)
    assert len(corpus.items(3)) == 3


def test_folder_corpus(tmp_path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for name in ["b.png", "a.jpg", "sub/c.bmp"]:
        Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), "L").save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    corpus = get_corpus(f"folder:{tmp_path}")
    items = corpus.items()
    assert [it.id for it in items] == ["folder/a.jpg", "folder/b.png", "folder/sub/c.bmp"]
    assert all(it.image.mode == "RGB" and it.image.size == (30, 20) for it in items)
    (tmp_path / "z_bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(InputError, match="z_bad.png"):
        get_corpus(f"folder:{tmp_path}").items()
    with pytest.raises(InputError):
        get_corpus(f"folder:{tmp_path / 'missing'}")


def _check_split(items: list[Item], known: list[Item], benign: list[Item], nk: int, nb: int) -> None:
    assert len(known) == nk and len(benign) == nb
    assert not {it.id for it in known} & {it.id for it in benign}
    assert not {it.group for it in known} & {it.group for it in benign}
    assert len({it.id for it in known + benign}) == nk + nb
    ids = {it.id for it in items}
    assert all(it.id in ids for it in known + benign)


def test_split_known_benign_disjoint_by_group_on_bundled() -> None:
    items = get_corpus("bundled").items()
    known, benign = split_known_benign(items, 20, 40, seed=1)
    _check_split(items, known, benign, 20, 40)
    again = split_known_benign(items, 20, 40, seed=1)
    assert [it.id for it in again[0]] == [it.id for it in known]
    other = split_known_benign(items, 20, 40, seed=2)
    assert [it.id for it in other[0]] != [it.id for it in known]
    with pytest.raises(ConfigError):
        split_known_benign(items, len(items), 1, seed=0)
    with pytest.raises(ConfigError):
        split_known_benign(items, -1, 1, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    nk=st.integers(0, 20),
    nb=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_property(sizes: list[int], nk: int, nb: int, seed: int) -> None:
    img = Image.new("RGB", (1, 1))
    items = [Item(f"g{g}#{j}", img, "test", f"g{g}", j > 0) for g, s in enumerate(sizes) for j in range(s)]
    try:
        known, benign = split_known_benign(items, nk, nb, seed)
    except ConfigError:
        # Greedy by group wastes at most (largest group - 1) items on the known side.
        assert nk + nb > len(items) - (max(sizes) - 1)
        return
    _check_split(items, known, benign, nk, nb)
