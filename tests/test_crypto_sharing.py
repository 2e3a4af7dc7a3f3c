"""Shamir sharing over Z_L: round trips, t-1 shares say nothing, robust decoding with fakes."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from e2eebench.protocols.crypto_group import L
from e2eebench.protocols.crypto_sharing import (
    Share, ShareGenerator, synthetic_share, interpolate_at, max_correctable, random_field_element,
    reconstruct, robust_reconstruct, share_x, split,
)
from e2eebench.protocols.errors import InputError, MalformedMessage


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_random_t_n(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 12))
    n = t + int(rng.integers(0, 8))
    secret = random_field_element(rng)
    shares = split(secret, t, n, rng)
    for _ in range(3):
        pick = rng.choice(n, size=t, replace=False)
        assert reconstruct([shares[i] for i in pick], t) == secret
    assert reconstruct(shares, t) == secret


def test_share_generator_on_demand_with_hashed_xs() -> None:
    rng = np.random.default_rng(7)
    gen = ShareGenerator(12345, 5, rng)
    ids = [f"voucher-{i}".encode() for i in range(9)]
    shares = [gen.share_for(v) for v in ids]
    assert len({s.x for s in shares}) == 9
    assert shares[0].x == share_x(ids[0]) != share_x(ids[0], b"other-domain")
    assert reconstruct(shares[4:], 5) == 12345
    assert all(Share.decode(s.encode()) == s for s in shares)


def test_share_decode_rejects_bad_bytes() -> None:
    for bad in (b"", bytes(63), bytes(64), (1).to_bytes(32, "little") + L.to_bytes(32, "little")):
        with pytest.raises(MalformedMessage):
            Share.decode(bad)


def test_errors() -> None:
    shares = split(5, 3, 5, np.random.default_rng(0))
    with pytest.raises(InputError):
        reconstruct(shares[:2], 3)
    with pytest.raises(InputError):
        reconstruct([shares[0], shares[0], shares[1]], 3)
    with pytest.raises(InputError):
        ShareGenerator(L, 3)
    with pytest.raises(InputError):
        ShareGenerator(1, 0)


def test_t_minus_1_shares_are_consistent_with_any_secret() -> None:
    rng = np.random.default_rng(11)
    t = 6
    secret_a = random_field_element(rng)
    shares = split(secret_a, t, 10, rng)
    known = [shares[i] for i in rng.choice(10, size=t - 1, replace=False)]
    for secret_b in (0, 1, random_field_element(rng), secret_a):
        # solve for the degree-(t-1) polynomial through (0, b) and the t-1 known shares
        xs = [0] + [s.x for s in known]
        ys = [secret_b] + [s.y for s in known]
        coeffs = _solve_vandermonde(xs, ys)
        assert len(coeffs) == t  # degree <= t-1: a legitimate sharing polynomial
        for s in known:
            assert _eval(coeffs, s.x) == s.y
        # and with one more share from that polynomial the scheme opens to b, not a
        extra = Share(123456789, _eval(coeffs, 123456789))
        assert reconstruct(known + [extra], t) == secret_b


def _solve_vandermonde(xs: list[int], ys: list[int]) -> list[int]:
    n = len(xs)
    m = [[pow(x, k, L) for k in range(n)] + [y] for x, y in zip(xs, ys)]
    for c in range(n):
        p = next(i for i in range(c, n) if m[i][c])
        m[c], m[p] = m[p], m[c]
        inv = pow(m[c][c], -1, L)
        m[c] = [v * inv % L for v in m[c]]
        for i in range(n):
            if i != c and m[i][c]:
                f = m[i][c]
                m[i] = [(a - f * b) % L for a, b in zip(m[i], m[c])]
    return [m[i][n] for i in range(n)]


def _eval(coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, k, L) for k, c in enumerate(coeffs)) % L


def _commit(secret: int) -> bytes:
    return hashlib.sha256(secret.to_bytes(32, "little")).digest()


@pytest.mark.parametrize("t,n_real,e", [(1, 3, 1), (3, 5, 1), (5, 5, 0), (5, 9, 4), (8, 12, 4), (10, 14, 4)])
def test_robust_recovers_when_n_at_least_t_plus_2e(t: int, n_real: int, e: int) -> None:
    rng = np.random.default_rng(t * 100 + e)
    secret = random_field_element(rng)
    gen = ShareGenerator(secret, t, rng)
    real = [gen.share_for(i.to_bytes(4, "big")) for i in range(n_real)]
    fakes = [synthetic_share(rng) for _ in range(e)]
    shares = real + fakes
    order = list(rng.permutation(len(shares)))
    mixed = [shares[i] for i in order]
    assert len(mixed) >= t + 2 * e and e <= max_correctable(len(mixed), t)
    commitment = _commit(secret)
    res = robust_reconstruct(mixed, t, check=lambda s: _commit(s) == commitment)
    assert res is not None and res.secret == secret
    fake_positions = {order.index(len(real) + j) for j in range(e)}
    assert set(res.fake) == fake_positions
    assert sorted(res.fake + res.genuine) == list(range(len(mixed)))
    assert interpolate_at([mixed[i] for i in res.genuine[:t]], 0) == secret


@pytest.mark.parametrize("t,n_real,e", [(5, 6, 2), (5, 8, 4), (8, 10, 3), (4, 3, 0)])
def test_robust_fails_gracefully_beyond_the_bound(t: int, n_real: int, e: int) -> None:
    rng = np.random.default_rng(t * 1000 + e)
    secret = random_field_element(rng)
    gen = ShareGenerator(secret, t, rng)
    shares = [gen.share_for(i.to_bytes(4, "big")) for i in range(n_real)] + [synthetic_share(rng) for _ in range(e)]
    assert len(shares) < t + 2 * e or n_real < t
    res = robust_reconstruct(shares, t)
    assert res is None


def test_robust_check_rejects_and_duplicates_handled() -> None:
    rng = np.random.default_rng(3)
    gen = ShareGenerator(42, 4, rng)
    real = [gen.share_for(bytes([i])) for i in range(8)]
    assert robust_reconstruct(real, 4, check=lambda s: s == 41) is None
    conflicting = Share(real[0].x, (real[0].y + 1) % L)
    res = robust_reconstruct(real + [real[1], conflicting], 4)
    assert res is not None and res.secret == 42
    assert res.fake == [9] and 8 in res.genuine


def test_robust_t30_n100_max_fakes() -> None:
    rng = np.random.default_rng(30)
    secret = random_field_element(rng)
    gen = ShareGenerator(secret, 30, rng)
    e = max_correctable(100, 30)
    shares = [gen.share_for(i.to_bytes(4, "big")) for i in range(100 - e)] + [synthetic_share(rng) for _ in range(e)]
    res = robust_reconstruct(shares, 30)
    assert res is not None and res.secret == secret and len(res.fake) == e == 35
    shares.append(synthetic_share(rng))  # 36 fakes among 101: beyond floor((101-30)/2) = 35
    assert robust_reconstruct(shares, 30) is None


# -- keyed share points and the detectable hash function --------------------------------------
from e2eebench.protocols.crypto_sharing import (  # noqa: E402
    DHF_P, DetectableHash, DhfDetector, dhf_column, dhf_random, measure_dhf_reconstruction, share_x_prf,
)


def test_prf_share_points_are_keyed_and_deterministic() -> None:
    k1, k2 = bytes(32), bytes([1]) * 32
    assert share_x_prf(k1, b"img") == share_x_prf(k1, b"img") != share_x_prf(k2, b"img")
    assert share_x_prf(k1, b"img") != share_x_prf(k1, b"img2")
    assert 0 < share_x_prf(k1, b"img") < L
    with pytest.raises(InputError):
        share_x_prf(b"short", b"img")


def _columns(t: int, n_real: int, n_fake: int, s: int, seed: int):
    rng = np.random.default_rng(seed)
    gen = ShareGenerator(random_field_element(rng), t, rng)
    dhf = DetectableHash(t, s, rng)
    key = rng.bytes(32)
    real = [gen.share_at(share_x_prf(key, bytes([i]) * 4)) for i in range(n_real)]
    cols = [("real", i, dhf_column(sh.x, dhf.evaluate(sh.x), t)) for i, sh in enumerate(real)]
    fakes = [synthetic_share(rng) for _ in range(n_fake)]
    cols += [("fake", i, dhf_column(sh.x, dhf_random(s, rng), t)) for i, sh in enumerate(fakes)]
    order = rng.permutation(len(cols))
    return [cols[i] for i in order]


@pytest.mark.parametrize("t,n_fake,s", [(1, 5, 6), (2, 7, 8), (3, 10, 10), (5, 0, 4), (8, 30, 32), (30, 40, 40)])
def test_dhf_first_dependency_is_exactly_the_t_real_shares(t: int, n_fake: int, s: int) -> None:
    """Real and fake columns in random order, then more reals: no dependency until the t-th real
    one arrives; then the support is exactly t real columns, however many fakes (<= s) came first."""
    cols = _columns(t, t + 3, n_fake, s, seed=t * 7 + n_fake)
    det = DhfDetector(t, s)
    reals_seen = 0
    for kind, i, col in cols:
        reals_seen += kind == "real"
        support = det.add(col, (kind, i))
        if reals_seen < t:
            assert support is None
        elif kind == "real" and reals_seen == t:
            assert support is not None and len(support) == t
            assert all(k == "real" for k, _ in support)
            return
    pytest.fail("never reached t real columns")


def test_dhf_values_below_t_are_uniform_whatever_the_key() -> None:
    """t-1 real DHF values say nothing: for any target values at their points there is a DHF key
    giving exactly those (the Vandermonde map from keys to values is onto), so they are
    distributed like synthetic ones."""
    t, s = 6, 4
    rng = np.random.default_rng(2)
    xs = [share_x_prf(bytes(32), bytes([i])) for i in range(t - 1)]
    from e2eebench.protocols.crypto_sharing import _phi, dhf_x
    v = np.array([_phi(dhf_x(x), t - 1) for x in xs], dtype=object)  # (t-1) x (t-1) Vandermonde
    target = [dhf_random(s, rng) for _ in xs]
    # solve C phi(x_j) = target_j row by row over F_p (Gaussian elimination on python ints)
    n = t - 1
    for row in range(s):
        m = [[int(v[j][k]) for k in range(n)] + [int(target[j][row])] for j in range(n)]
        for c in range(n):
            p_ = next(i for i in range(c, n) if m[i][c] % DHF_P)
            m[c], m[p_] = m[p_], m[c]
            inv = pow(m[c][c], DHF_P - 2, DHF_P)
            m[c] = [a * inv % DHF_P for a in m[c]]
            for i in range(n):
                if i != c and m[i][c]:
                    f = m[i][c]
                    m[i] = [(a - f * b) % DHF_P for a, b in zip(m[i], m[c])]
        coeffs = [m[i][n] for i in range(n)]
        for j in range(n):
            assert sum(c * int(v[j][k]) for k, c in enumerate(coeffs)) % DHF_P == target[j][row]


def test_dhf_more_fakes_than_s_can_fake_a_dependency() -> None:
    """The bound is real: with more than s synthetic columns the rank runs out and a dependency
    appears among fakes (the provider's inner-layer check then fails: nothing is read)."""
    t, s = 3, 4
    cols = _columns(t, 0, s + t, s, seed=5)
    det = DhfDetector(t, s)
    out = [det.add(col, (k, i)) for k, i, col in cols]
    assert any(o is not None for o in out)
    assert all(k == "fake" for o in out if o for k, _ in o)


def test_dhf_measure_year_small() -> None:
    r = measure_dhf_reconstruction(30, 30, 60, 64)
    assert r["opened"] == 90 and r["rank"] == 89 and r["detect_s"] > 0
    with pytest.raises(InputError):
        measure_dhf_reconstruction(30, 29, 10)


@pytest.mark.parametrize("t", [1, 2, 3, 30])
def test_interpolate_coeffs_recovers_the_sharing_polynomial(t):
    """The coefficients the provider keeps after reconstruction are the device's polynomial, and
    Horner on them agrees with Lagrange interpolation at a fresh point."""
    from e2eebench.protocols.crypto_sharing import evaluate_poly, interpolate_coeffs
    rng = np.random.default_rng(t)
    gen = ShareGenerator(random_field_element(rng), t, rng)
    shares = [gen.share_for(bytes([i])) for i in range(t)]
    coeffs = interpolate_coeffs(shares)
    assert coeffs == gen._coeffs
    x = share_x(b"fresh")
    assert evaluate_poly(coeffs, x) == interpolate_at(shares, x) == gen.share_at(x).y
    with pytest.raises(InputError):
        interpolate_coeffs(shares + shares[:1])
