"""Shamir t-of-n secret sharing over Z_L, keyed share points, and a detectable hash function.

Why: in tPSI-AD each device holds one secret per account (the inner-layer key) and emits one
share of it with every real voucher, over time; the provider learns the key only once it holds
t shares of *distinct* images. Synthetic vouchers carry fake shares (random points) so that the
provider cannot count real matches below the threshold; reconstruction must then find the t
real shares among any number of fakes, without the fakes moving the threshold.

- The field is Z_L, L the prime order of ristretto255 (so secrets can be group scalars).
- A share's x is a keyed PRF of the image's hash (:func:`share_x_prf`, BLAKE2b keyed with a
  device-held key): the same image always yields the same share, so a resent image adds no
  share and the threshold counts distinct images. :func:`share_x` (an unkeyed hash of an id)
  stays for per-image sharings (psi-ad-lsh), where distinctness is by position.
- Any t-1 shares are consistent with every secret (for each candidate secret exactly one
  polynomial of degree <= t-1 passes through them), so they carry no information about it.

**Detectable hash function** (DHF; Bhowmick et al., "The Apple PSI System", 2021, section on
synthetic matches; construction and proof our own, see docs/psi.md). Each real voucher also
carries ``v = C * phi(x')`` over the prime field F_p, p = 2^31 - 1, where ``C`` is a device-held
random s x (t-1) matrix, ``x'`` = 1 + (share x mod (p-1)) and ``phi(x') = (1, x', ..., x'^(t-2))``;
a synthetic voucher carries s uniform values. Put each opened voucher's column
``a = (phi(x'), v)`` (length m = t-1+s) into a matrix. Then:

- any t-1 real columns are independent (Vandermonde) and their v's are uniform and independent
  of everything else (C is uniform and the map C -> (C phi(x'_1), ..., C phi(x'_{t-1})) is a
  bijection): below t the DHF values of real and synthetic vouchers are identically distributed;
- the t-th distinct real column is a combination of the previous t-1 real columns with all t
  coefficients nonzero (it lies in the (t-1)-dimensional image of phi, any t-1 of which span it);
- a combination that gives 0 cannot involve a synthetic column as long as there are at most s
  of them: its synthetic part z_F must satisfy (W_F - C V_F) z_F = 0 for the s x f uniform
  matrix W_F - C V_F, which has full column rank except with probability < p^-(s-f+1).

So the first linear dependency among opened columns appears exactly when the t-th distinct real
share arrives, and its support is exactly those t shares, whatever the number (<= s) of
synthetic ones. :class:`DhfDetector` finds it incrementally (one reduction against a reduced
echelon basis per opened voucher, O(rank * (m + rank)) word operations in numpy).

Robust reconstruction by Berlekamp–Welch (:func:`robust_reconstruct`, needs n >= t + 2e) stays
for per-image sharings without synthetic shares and as a fallback on a DHF support larger than t.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from e2eebench.protocols.crypto_group import L, RandomSource, as_random_bytes
from e2eebench.protocols.errors import InputError, MalformedMessage

SHARE_BYTES = 64


@dataclass(frozen=True, slots=True)
class Share:
    """One point (x, y) of the sharing polynomial; x in [1, L), y in [0, L)."""

    x: int
    y: int

    def encode(self) -> bytes:
        return self.x.to_bytes(32, "little") + self.y.to_bytes(32, "little")

    @classmethod
    def decode(cls, data: bytes) -> Share:
        if not isinstance(data, (bytes, bytearray)) or len(data) != SHARE_BYTES:
            n = len(data) if isinstance(data, (bytes, bytearray)) else type(data).__name__
            raise MalformedMessage(f"share must be {SHARE_BYTES} bytes, got {n}")
        x = int.from_bytes(data[:32], "little")
        y = int.from_bytes(data[32:], "little")
        if not 0 < x < L:
            raise MalformedMessage("share x must be in [1, L)")
        if y >= L:
            raise MalformedMessage("share y is not reduced mod L")
        return cls(x, y)


def share_x(voucher_id: bytes, domain: bytes = b"e2eebench/share-x/v1") -> int:
    """Evaluation point for a voucher: hash of its id into [1, L) (distinct w.p. 1 - n^2/2^253)."""
    if not isinstance(voucher_id, (bytes, bytearray)):
        raise InputError(f"voucher id must be bytes, not {type(voucher_id).__name__}")
    h = hashlib.sha512(len(domain).to_bytes(2, "big") + domain + voucher_id).digest()
    return int.from_bytes(h, "little") % (L - 1) + 1


def random_field_element(rng: RandomSource = None) -> int:
    """Uniform element of Z_L from 64 random bytes (bias < 2^-259)."""
    return int.from_bytes(as_random_bytes(rng)(64), "little") % L


def _check_t(t: int) -> None:
    if not isinstance(t, (int, np.integer)) or t < 1:
        raise InputError(f"threshold t must be an integer >= 1, got {t!r}")


class ShareGenerator:
    """A random polynomial of degree t-1 with constant term ``secret``; shares on demand.

    The coefficients are secret state of the device. ``rng=None`` draws them from the OS
    CSPRNG; pass ``numpy.random.default_rng(seed)`` for a reproducible run.
    """

    def __init__(self, secret: int, t: int, rng: RandomSource = None) -> None:
        _check_t(t)
        if not isinstance(secret, (int, np.integer)) or not 0 <= secret < L:
            raise InputError("secret must be an integer in [0, L)")
        self.t = int(t)
        self._coeffs = [int(secret)] + [random_field_element(rng) for _ in range(self.t - 1)]

    def share_at(self, x: int) -> Share:
        if not 0 < x < L:
            raise InputError("share x must be in [1, L)")
        return Share(x, _horner(self._coeffs, x))

    def share_for(self, voucher_id: bytes) -> Share:
        return self.share_at(share_x(voucher_id))


def split(secret: int, t: int, n: int, rng: RandomSource = None) -> list[Share]:
    """n shares at x = 1..n (for tests and fixed-size uses; devices use :class:`ShareGenerator`)."""
    if n < t:
        raise InputError(f"need n >= t, got n={n}, t={t}")
    gen = ShareGenerator(secret, t, rng)
    return [gen.share_at(x) for x in range(1, n + 1)]


def synthetic_share(rng: RandomSource = None) -> Share:
    """A synthetic voucher's share: random y at a random x (indistinguishable from a real one)."""
    return Share(random_field_element(rng) % (L - 1) + 1, random_field_element(rng))


def _horner(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % L
    return acc


def interpolate_at(shares: Sequence[Share], x0: int = 0) -> int:
    """Lagrange interpolation at ``x0`` through all given shares (distinct xs required)."""
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise InputError("shares have duplicate x values")
    acc_terms: list[tuple[int, int]] = []
    for i, si in enumerate(shares):
        n_i, d_i = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                n_i = n_i * (x0 - xj) % L
                d_i = d_i * (si.x - xj) % L
        acc_terms.append((si.y * n_i % L, d_i))
    # one inversion for all denominators: sum a_i / d_i = (sum a_i * prod_{j!=i} d_j) / prod d
    total, den = 0, 1
    for a, d in acc_terms:
        total = (total * d + a * den) % L
        den = den * d % L
    return total * pow(den, -1, L) % L


def interpolate_coeffs(shares: Sequence[Share]) -> list[int]:
    """Coefficients (lowest degree first) of the polynomial through the shares, O(n^2) once, so
    that later points are checked by Horner's rule (:func:`evaluate_poly`, n multiplications)
    instead of a fresh O(n^2) interpolation each."""
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise InputError("shares have duplicate x values")
    n = len(xs)
    master = [1]  # prod_j (X - x_j), lowest degree first
    for xj in xs:
        master = [(a - xj * b) % L for a, b in zip([0] + master, master + [0])]
    out = [0] * n
    for si in shares:
        quot, acc = [0] * n, 0  # master / (X - x_i) by synthetic division (exact)
        for k in range(n, 0, -1):
            acc = (master[k] + acc * si.x) % L
            quot[k - 1] = acc
        w = si.y * pow(_horner(quot, si.x), -1, L) % L
        out = [(o + w * q) % L for o, q in zip(out, quot)]
    return out


def evaluate_poly(coeffs: Sequence[int], x: int) -> int:
    """P(x) mod L for coefficients lowest degree first."""
    return _horner(coeffs, x)


def reconstruct(shares: Sequence[Share], t: int) -> int:
    """The secret from the first t shares (all assumed genuine); InputError if fewer than t."""
    _check_t(t)
    if len(shares) < t:
        raise InputError(f"need at least t={t} shares, got {len(shares)}")
    if any(not 0 < s.x < L for s in shares):
        raise InputError("share x must be in [1, L)")
    return interpolate_at(list(shares)[:t], 0)


@dataclass(frozen=True, slots=True)
class RobustResult:
    """Outcome of robust reconstruction: the secret and which input shares were fake."""

    secret: int
    fake: list[int]  # indices into the input sequence whose y is off the polynomial
    genuine: list[int]
    coefficients: list[int]  # P(x) = sum c_k x^k, degree < t


def max_correctable(n: int, t: int) -> int:
    """Largest number of fakes Berlekamp–Welch corrects among n shares: floor((n - t) / 2)."""
    return max(-1, (n - t) // 2)


def robust_reconstruct(
    shares: Sequence[Share], t: int, check: Callable[[int], bool] | None = None
) -> RobustResult | None:
    """Recover the secret despite up to floor((n-t)/2) fake shares (Berlekamp–Welch); else None.

    Shares with the same x and different y are left out of decoding (at most one of them can
    be genuine) and classified afterwards; exact duplicates count once.
    """
    _check_t(t)
    by_x: dict[int, set[int]] = {}
    for s in shares:
        if not 0 < s.x < L or not 0 <= s.y < L:
            raise InputError("share coordinates out of range")
        by_x.setdefault(s.x, set()).add(s.y)
    pts = [(x, next(iter(ys))) for x, ys in by_x.items() if len(ys) == 1]
    n = len(pts)
    if n < t:
        return None
    e = (n - t) // 2
    coeffs = _berlekamp_welch(pts, t, e)
    if coeffs is None:
        return None
    agree = sum(1 for x, y in pts if _horner(coeffs, x) == y)
    if agree < n - e:  # uniqueness guarantee needs agreement with >= n - E >= t + E shares
        return None
    secret = coeffs[0]
    if check is not None and not check(secret):
        return None
    fake, genuine = [], []
    for i, s in enumerate(shares):
        (genuine if _horner(coeffs, s.x) == s.y else fake).append(i)
    return RobustResult(secret, fake, genuine, coeffs)


def _berlekamp_welch(pts: list[tuple[int, int]], t: int, e: int) -> list[int] | None:
    """Coefficients of P (length t) or None; see the module docstring for the system solved."""
    nq = t + e  # Q: coefficients q_0 .. q_{t-1+e}
    cols = nq + e  # then F: f_0 .. f_{e-1}; f_e = 1
    rows: list[list[int]] = []
    for x, y in pts:
        powers = [1] * (nq)
        for k in range(1, nq):
            powers[k] = powers[k - 1] * x % L
        xe = powers[e] if e < nq else pow(x, e, L)
        row = powers + [(-y * powers[k]) % L for k in range(e)] + [y * xe % L]
        rows.append(row)
    sol = _solve_mod_l(rows, cols)
    if sol is None:
        return None
    q = sol[:nq]
    f = sol[nq:] + [1]
    quot, rem = _poly_divmod_monic(q, f)
    if any(rem):
        return None
    quot = (quot + [0] * t)[:t]
    return quot


def _solve_mod_l(rows: list[list[int]], cols: int) -> list[int] | None:
    """Any solution of the augmented system over Z_L (free variables 0), or None if inconsistent."""
    m = [r[:] for r in rows]
    pivots: list[int] = []
    r = 0
    for c in range(cols):
        p = next((i for i in range(r, len(m)) if m[i][c]), None)
        if p is None:
            continue
        m[r], m[p] = m[p], m[r]
        inv = pow(m[r][c], -1, L)
        piv = [v * inv % L for v in m[r]]
        m[r] = piv
        for i in range(len(m)):
            if i != r and m[i][c]:
                f = m[i][c]
                m[i] = [(a - f * b) % L for a, b in zip(m[i], piv)]
        pivots.append(c)
        r += 1
        if r == len(m):
            break
    for i in range(r, len(m)):
        if m[i][cols]:  # 0 = nonzero: inconsistent
            return None
    sol = [0] * cols
    for i, c in enumerate(pivots):
        sol[c] = m[i][cols]
    return sol


def _poly_divmod_monic(num: list[int], den: list[int]) -> tuple[list[int], list[int]]:
    """num / den over Z_L for monic den (coefficient lists, lowest degree first)."""
    num = num[:]
    dd = len(den) - 1
    if len(num) - 1 < dd:
        return [0], num
    quot = [0] * (len(num) - dd)
    for k in range(len(num) - 1, dd - 1, -1):
        c = num[k]
        if c:
            quot[k - dd] = c
            for j in range(dd + 1):
                num[k - dd + j] = (num[k - dd + j] - c * den[j]) % L
    return quot, num[:dd]


def measure_robust(t: int, n: int, e: int | None = None, seed: int = 0) -> float:
    """CPU seconds for one robust reconstruction of t-of-n with e fakes (default: the maximum)."""
    e = max_correctable(n, t) if e is None else e
    if e < 0 or n - e < t:
        raise InputError(f"cannot decode t={t} from n={n} with e={e} fakes")
    rng = np.random.default_rng(seed)
    secret = random_field_element(rng)
    gen = ShareGenerator(secret, t, rng)
    shares = [gen.share_for(i.to_bytes(8, "big")) for i in range(n - e)]
    shares += [synthetic_share(rng) for _ in range(e)]
    order = rng.permutation(n)
    shares = [shares[i] for i in order]
    t0 = time.process_time()
    res = robust_reconstruct(shares, t)
    dt = time.process_time() - t0
    if res is None or res.secret != secret:
        raise RuntimeError("robust reconstruction failed inside measure_robust")
    return dt


# --------------------------------------------------------------------------------------------
# keyed share points: the threshold counts distinct images
# --------------------------------------------------------------------------------------------
PRF_KEY_BYTES = 32
_PRF_PERSON = b"e2ee-share-prf1"


def share_x_prf(key: bytes, element: bytes, domain: bytes = b"x") -> int:
    """x = BLAKE2b-512(element, key=key) mod (L-1) + 1: a keyed PRF of the element into [1, L).

    The same element under the same key always gives the same x (so the same share); without
    the key the x of an element cannot be computed (so the provider cannot test a guess).
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) != PRF_KEY_BYTES:
        raise InputError(f"PRF key must be {PRF_KEY_BYTES} bytes")
    if not isinstance(element, (bytes, bytearray)):
        raise InputError(f"element must be bytes, not {type(element).__name__}")
    h = hashlib.blake2b(len(domain).to_bytes(2, "big") + domain + element, digest_size=64, key=key,
                        person=_PRF_PERSON).digest()
    return int.from_bytes(h, "little") % (L - 1) + 1


def prf_bytes(key: bytes, element: bytes, domain: bytes, n: int) -> bytes:
    """n pseudo-random bytes from (key, domain, element): deterministic per element."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.blake2b(len(domain).to_bytes(2, "big") + domain + i.to_bytes(4, "big") + element,
                               digest_size=64, key=key, person=_PRF_PERSON).digest()
        i += 1
    return out[:n]


# --------------------------------------------------------------------------------------------
# detectable hash function over F_p, p = 2^31 - 1 (see the module docstring)
# --------------------------------------------------------------------------------------------
DHF_P = 2**31 - 1
DHF_BYTES = 4  # one element of F_p, little-endian


def dhf_x(x: int) -> int:
    """The DHF evaluation point of a share with x-coordinate ``x``: 1 + (x mod (p-1))."""
    return 1 + x % (DHF_P - 1)


def _phi(xd: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.int64)
    acc = 1
    for k in range(n):
        out[k] = acc
        acc = acc * xd % DHF_P
    return out


def _matvec(rows: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_k coef[k] * rows[k] mod p without int64 overflow (coef split into 16-bit halves)."""
    lo, hi = coef & 0xFFFF, coef >> 16
    return ((lo @ rows) % DHF_P + ((hi @ rows) % DHF_P) * 65536) % DHF_P


def dhf_decode(data: bytes, s: int) -> np.ndarray:
    if len(data) != s * DHF_BYTES:
        raise MalformedMessage(f"DHF value must be {s * DHF_BYTES} bytes, got {len(data)}")
    v = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if (v >= DHF_P).any():
        raise MalformedMessage("DHF value is not reduced mod 2^31 - 1")
    return v


def dhf_encode(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype="<u4").tobytes()


class DetectableHash:
    """The device's DHF key: a uniform s x (t-1) matrix C over F_p. ``evaluate(x)`` = C phi(x')."""

    def __init__(self, t: int, s: int, rng: RandomSource = None) -> None:
        _check_t(t)
        if not isinstance(s, (int, np.integer)) or s < 1:
            raise InputError(f"DHF size s must be an integer >= 1, got {s!r}")
        self.t, self.s = int(t), int(s)
        raw = as_random_bytes(rng)(8 * self.s * (self.t - 1))
        self._c = (np.frombuffer(raw, dtype="<u8") % np.uint64(DHF_P)).astype(np.int64).reshape(self.s, self.t - 1)
        self._ct = np.ascontiguousarray(self._c.T)  # evaluate() multiplies by the transpose every voucher

    def evaluate(self, x: int) -> np.ndarray:
        if self.t == 1:
            return np.zeros(self.s, dtype=np.int64)
        return _matvec(self._ct, _phi(dhf_x(x), self.t - 1))

    @property
    def key_bytes(self) -> int:
        return self.s * (self.t - 1) * DHF_BYTES


def dhf_random(s: int, rng: RandomSource = None) -> np.ndarray:
    """A synthetic voucher's DHF value: s uniform elements of F_p (bias < 2^-32)."""
    raw = as_random_bytes(rng)(8 * s)
    return (np.frombuffer(raw, dtype="<u8") % np.uint64(DHF_P)).astype(np.int64)


def dhf_column(x: int, v: np.ndarray, t: int) -> np.ndarray:
    """The detection column (phi(x'), v) of an opened voucher with share x and DHF value v."""
    return np.concatenate([_phi(dhf_x(x), t - 1), np.asarray(v, dtype=np.int64)])


class DhfDetector:
    """Incremental detection of the first linear dependency among opened columns.

    Keeps a fully reduced echelon basis of the columns added so far. :meth:`add` returns
    ``None`` while the new column is independent (it joins the basis) and, on the first
    dependent column, the ids of the columns in the support of the dependency (the new one
    included): with at most s synthetic columns that support is exactly t distinct real shares
    (module docstring). Only then is the dependency itself solved, by one elimination over the
    basis columns that tracks combinations, so an account that never reaches t (every benign
    one) pays only the rank test. A dependent column is not added, so a caller that rejects a
    support can go on.
    """

    def __init__(self, t: int, s: int, track: bool = False) -> None:
        _check_t(t)
        self.t, self.s, self.m = int(t), int(s), int(t) - 1 + int(s)
        cap = self.m + 1
        self._b = np.zeros((cap, self.m), dtype=np.int64)
        self._tr = np.zeros((cap, cap), dtype=np.int64) if track else None
        self._piv: list[int] = []
        self._cols: list[np.ndarray] = []
        self.ids: list[Any] = []

    @property
    def rank(self) -> int:
        return len(self._piv)

    def add(self, column: np.ndarray, ident: Any) -> list[Any] | None:
        c = np.asarray(column, dtype=np.int64) % DHF_P
        if c.shape != (self.m,):
            raise InputError(f"DHF column must have {self.m} entries, got {c.shape}")
        r = self.rank
        coef = c[self._piv]
        red = (c - _matvec(self._b[:r], coef)) % DHF_P if r else c
        nz = np.flatnonzero(red)
        if nz.size == 0:
            return self._support(coef, ident)
        if r == self.m:  # cannot happen for a valid column set (rank <= m); refuse rather than overflow
            raise InputError("DHF basis is full")
        pv = int(nz[0])
        inv = pow(int(red[pv]), DHF_P - 2, DHF_P)
        b = red * inv % DHF_P
        f = self._b[:r, pv].copy()
        tr = self._tr
        if tr is not None:
            trow = np.zeros(r + 1, dtype=np.int64)
            if r:
                trow[:r] = (DHF_P - _matvec(tr[:r, :r], coef)) % DHF_P * inv % DHF_P
            trow[r] = inv
        if r and f.any():
            upd = np.multiply.outer(f, b)
            upd %= DHF_P
            blk = self._b[:r]
            blk -= upd
            blk %= DHF_P
            if tr is not None:
                tu = np.multiply.outer(f, trow)
                tu %= DHF_P
                tb = tr[:r, :r + 1]
                tb -= tu
                tb %= DHF_P
        self._b[r] = b
        if tr is not None:
            tr[r, :r + 1] = trow
        self._piv.append(pv)
        self._cols.append(c)
        self.ids.append(ident)
        return None

    def _support(self, coef: np.ndarray, ident: Any) -> list[Any]:
        r = self.rank
        if self._tr is None:  # solve the dependency once, with a tracking pass over the basis columns
            again = DhfDetector(self.t, self.s, track=True)
            for j, col in enumerate(self._cols):
                if again.add(col, j) is not None:
                    raise InputError("DHF basis columns became dependent on replay")
            z = _matvec(again._tr[:r, :r], coef) if r else np.zeros(0, dtype=np.int64)
            # again's basis rows are in the same order with the same pivots as ours, but our rows
            # and its rows are equal (same reduced echelon form of the same columns)
        else:
            z = _matvec(self._tr[:r, :r], coef) if r else np.zeros(0, dtype=np.int64)
        return [self.ids[j] for j in np.flatnonzero(z).tolist()] + [ident]


def measure_dhf_reconstruction(t: int, n_real: int, n_fake: int, s: int | None = None,
                               seed: int = 0) -> dict[str, float]:
    """CPU seconds for the provider's threshold work on one account: every opened share goes
    through :class:`DhfDetector` (fakes first, so the t-th real one arrives last: the worst
    case), then the secret is interpolated from the support. Checks the result."""
    s = n_fake + 1 if s is None else s
    if n_real < t or n_fake > s:
        raise InputError(f"need n_real >= t and n_fake <= s (t={t}, n_real={n_real}, n_fake={n_fake}, s={s})")
    rng = np.random.default_rng(seed)
    secret = random_field_element(rng)
    gen = ShareGenerator(secret, t, rng)
    dhf = DetectableHash(t, s, rng)
    key = rng.bytes(PRF_KEY_BYTES)
    reals = [gen.share_at(share_x_prf(key, i.to_bytes(8, "big"))) for i in range(t)]
    cols = [(sh, dhf.evaluate(sh.x)) for sh in reals]
    fakes = [synthetic_share(rng) for _ in range(n_fake)]
    cols_f = [(sh, dhf_random(s, rng)) for sh in fakes]
    order = [cols_f[i] for i in rng.permutation(n_fake)] + cols
    t0 = time.process_time()
    det = DhfDetector(t, s)
    support = None
    for i, (sh, v) in enumerate(order):
        support = det.add(dhf_column(sh.x, v, t), i)
        if support is not None:
            break
    t1 = time.process_time()
    if support is None or len(support) != t:
        raise RuntimeError("DHF detection failed inside measure_dhf_reconstruction")
    got = interpolate_at([order[i][0] for i in support], 0)
    t2 = time.process_time()
    if got != secret:
        raise RuntimeError("DHF reconstruction gave the wrong secret")
    return {"detect_s": t1 - t0, "interpolate_s": t2 - t1, "opened": float(len(order)), "rank": float(det.rank)}


__all__ = [
    "SHARE_BYTES", "Share", "ShareGenerator", "RobustResult", "share_x", "random_field_element",
    "split", "synthetic_share", "interpolate_at", "interpolate_coeffs", "evaluate_poly", "reconstruct", "max_correctable",
    "robust_reconstruct", "measure_robust", "PRF_KEY_BYTES", "share_x_prf", "prf_bytes", "DHF_P",
    "DHF_BYTES", "dhf_x", "dhf_decode", "dhf_encode", "DetectableHash", "dhf_random", "dhf_column",
    "DhfDetector", "measure_dhf_reconstruction",
]
