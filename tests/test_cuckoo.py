"""Cuckoo layout: every key in a candidate slot, no sharing, deterministic, scales."""
from __future__ import annotations

import time

import numpy as np
import pytest

from e2eebench.protocols.cuckoo import CuckooTable, candidate_slots_for
from e2eebench.protocols.errors import ConfigError, InputError


def _keys(n: int, seed: int = 0) -> list[bytes]:
    raw = np.random.default_rng(seed).bytes(32 * n)
    return [raw[32 * i : 32 * i + 32] for i in range(n)]


def _check_valid(tb: CuckooTable, keys: list[bytes]) -> None:
    owners = tb.slot_owner
    assert owners.dtype == np.int64 and owners.shape == (tb.n_slots,)
    placed = owners[owners >= 0]
    assert len(placed) == len(keys)  # every key placed ...
    assert len(np.unique(placed)) == len(keys)  # ... exactly once: no two keys share a slot
    cand = tb.candidates_many(keys)
    for i, key in enumerate(keys):
        slots = tb.candidate_slots(key)
        assert slots == cand[i].tolist()
        assert any(owners[s] == i for s in slots), f"key {i} not in any candidate slot"
        assert tb.slot_of(i, key) >= 0


@pytest.mark.parametrize("n_hashes,load", [(2, 0.45), (3, 0.8), (3, 0.85), (4, 0.9)])
def test_every_key_in_a_candidate_slot(n_hashes: int, load: float) -> None:
    keys = _keys(3000, n_hashes)
    tb = CuckooTable.build(keys, n_hashes=n_hashes, load=load, seed=b"s1")
    _check_valid(tb, keys)
    assert tb.n_slots == int(np.ceil(3000 / load))
    assert abs(tb.load - load) < 0.01


def test_deterministic_by_seed() -> None:
    keys = _keys(2000)
    a = CuckooTable.build(keys, seed=b"same")
    b = CuckooTable.build(keys, seed=b"same")
    c = CuckooTable.build(keys, seed=b"other")
    assert np.array_equal(a.slot_owner, b.slot_owner) and a.seed == b.seed
    assert not np.array_equal(a.slot_owner, c.slot_owner)
    assert candidate_slots_for(keys[0], b"same", a.n_slots, 3) == a.candidate_slots(keys[0])


def test_rebuild_with_new_seed_when_walks_fail() -> None:
    keys = _keys(500, 5)
    # a tiny kick budget at a high load forces failures; rebuilds are deterministic too
    tb = CuckooTable.build(keys, n_hashes=3, load=0.7, seed=b"rb", max_kicks=5, max_rebuilds=200)
    assert tb.attempt > 0 and tb.seed != tb.base_seed
    _check_valid(tb, keys)
    again = CuckooTable.build(keys, n_hashes=3, load=0.7, seed=b"rb", max_kicks=5, max_rebuilds=200)
    assert again.seed == tb.seed and np.array_equal(again.slot_owner, tb.slot_owner)


def test_bad_input() -> None:
    with pytest.raises(InputError):
        CuckooTable.build([b"a", b"a"], seed=b"s")
    with pytest.raises(ConfigError):
        CuckooTable.build([b"a"], seed=b"")
    with pytest.raises(ConfigError):
        CuckooTable.build([b"a"], seed=b"s", load=1.2)
    with pytest.raises(ConfigError):
        CuckooTable.build([b"a"], seed=b"s", n_hashes=1)
    with pytest.raises(InputError):
        CuckooTable.build(["a"], seed=b"s")  # type: ignore[list-item]
    with pytest.raises(ConfigError):  # above the 2-choice threshold of 0.5: cannot be built
        CuckooTable.build(_keys(2000), n_hashes=2, load=0.7, seed=b"s", max_rebuilds=2)


def test_empty_and_small() -> None:
    tb = CuckooTable.build([], seed=b"s")
    assert tb.n_keys == 0 and (tb.slot_owner == -1).all()
    tb = CuckooTable.build([b"only"], seed=b"s")
    _check_valid(tb, [b"only"])


def test_build_1e5_keys_reasonable_time() -> None:
    keys = _keys(100_000)
    t0 = time.process_time()
    tb = CuckooTable.build(keys, seed=b"big")
    dt = time.process_time() - t0
    print(f"cuckoo build 1e5 keys: {dt:.2f} s CPU, attempt {tb.attempt}")
    placed = tb.slot_owner[tb.slot_owner >= 0]
    assert len(np.unique(placed)) == 100_000
    cand = tb.candidates_many(keys)
    idx = np.arange(100_000)
    assert (tb.slot_owner[cand] == idx[:, None]).any(axis=1).all()
    assert dt < 10


@pytest.mark.slow
def test_build_1e6_keys() -> None:
    keys = _keys(1_000_000, 9)
    t0 = time.process_time()
    tb = CuckooTable.build(keys, seed=b"huge")
    dt = time.process_time() - t0
    print(f"cuckoo build 1e6 keys: {dt:.2f} s CPU, attempt {tb.attempt}")
    cand = tb.candidates_many(keys)
    idx = np.arange(1_000_000)
    assert (tb.slot_owner[cand] == idx[:, None]).any(axis=1).all()
    assert len(np.unique(tb.slot_owner[tb.slot_owner >= 0])) == 1_000_000
    assert dt < 60


def test_psi_default_load_builds_at_1e5_keys() -> None:
    """The PSI schemes' default (3 hash functions, load 0.85: 37.6 bytes of table per element)
    builds without a stash at 10^5 keys, first attempt for this seed."""
    keys = _keys(100_000, 3)
    tb = CuckooTable.build(keys, n_hashes=3, load=0.85, seed=b"psi-default")
    assert tb.load == pytest.approx(0.85, abs=1e-4)
    cand = tb.candidates_many(keys)
    assert (tb.slot_owner[cand] == np.arange(100_000)[:, None]).any(axis=1).all()
