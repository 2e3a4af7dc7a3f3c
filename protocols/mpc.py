"""``two-server-mpc``: hash bits secret-shared between two non-colluding servers.

EU mapping: "server-related: multiple third parties". The device splits its hash bits x_b
into additive shares over the prime field F_p (p = 2^31 - 1): ``x_b = a_b + c_b``, sends
``a`` sealed to the provider (as the envelope's detection payload) and ``c`` sealed to a
second server. Because the list is known to both servers, the Hamming distance to every
list entry is *linear* in the shared bits — ``x_b XOR y_b = x_b`` if ``y_b = 0`` else
``1 - x_b`` — so each server computes its share of every distance locally, with no
interaction.

The threshold test is the masked polynomial ``f(d) = r * prod_{i=0..tau} (d - i)``: zero
iff ``d <= tau`` (d is an integer in [0, bits] and p is a prime larger than bits, so no
factor of a non-match vanishes, and a product of non-zero field elements is non-zero).
The mask is ``r = r_a * r_b`` per list entry, with ``r_a`` drawn by the provider (shared as
``(r_a, 0)``) and ``r_b`` by the second server (shared as ``(0, r_b)``): non-zero, and known
to neither server. (A mask known to one server would let that server divide it out of the
opened value and read ``prod (d - i)``, i.e. the distance to every list entry, and from
enough distances the hash itself.)
Products of shared values use Beaver triples from a dealer (a party of its own, in an offline
phase; its CPU and bytes are counted) and a product tree of depth ceil(log2(tau + 2)); every
multiplication layer is one exchange of openings between the two servers through the
channel. Finally both servers open ``f(d_j)`` for all list entries, in an order permuted
by a seed the two servers share, and learn whether any is zero.

What each party learns: the provider and the second server each see uniformly random shares
(nothing about x); the opened values are zero for list entries within tau and uniform
non-zero otherwise, so both learn the verdict and the number of entries within tau. The
permutation seed is known to both servers, so it hides nothing from them: each can also tell
*which* entries are within tau (recorded in the provider's report). Colluding, they
reconstruct x. Semi-honest security: a server that deviates can change the verdict; the
dealer must not collude with either server. A deviating provider learns more than the verdict:
its factors ``(d - i)`` are its own local shares (``test_points``), so it may replace the test
points 0..tau by any tau + 1 points it chooses (e.g. tau+1..2 tau+1) and learn, per list entry,
whether the distance lies in that set (near misses), undetectably for the second server, which
sees the same number of factors; over repeated sends of an image it can walk the set. The
attack is implemented against this code and measured (evaluation/leakage/mpc_deviation.py,
docs/leakage.md): quick profile, list 40, band (31, 63], 60 distinct benign images: near
misses read for 5% [1.7%, 13.7%] of them, every per-entry answer exact (60/60), the second
server's view unchanged (0/60).

The second server's share reaches it through the channel (``ctx.send``); because the
simulation runs the second server inside ``provider_receive``, the delivered bytes are kept
in ``ctx.extra["inbox:second-server"]`` (its inbox for this message) and read from there.
"""
from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEALER, DEVICE, PROVIDER, RECIPIENT, SECOND_SERVER, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal
from e2eebench.protocols.errors import MalformedMessage
from e2eebench.protocols.framework import Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase

P = 2_147_483_647  # 2^31 - 1: products of two elements fit in uint64
SHARE_INFO = b"e2eebench two-server-mpc share v1"


def _mulmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.uint64) * b.astype(np.uint64)) % P


def _rand(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, P, size=shape, dtype=np.uint64)


def _encode(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr, dtype="<u4").tobytes()


def _decode(b: bytes, n: int, what: str) -> np.ndarray:
    if len(b) != 4 * n:
        raise MalformedMessage(f"{what}: expected {4 * n} bytes, got {len(b)}")
    a = np.frombuffer(b, dtype="<u4").astype(np.uint64)
    if (a >= P).any():
        raise MalformedMessage(f"{what}: value outside the field")
    return a


@register
class TwoServerMPC(Scheme):
    name = "two-server-mpc"
    family = "mpc"
    eu_category = "server"
    parties = (DEVICE, PROVIDER, SECOND_SERVER, DEALER, RECIPIENT)
    verdict_to = "provider and second server jointly"
    leakage = {PROVIDER: ("verdict", "count"), SECOND_SERVER: ("verdict", "count")}
    # semi-honest model: the declaration is what an honest-but-curious server learns; what a
    # malicious provider gains is measured by the deviating-server attack (mpc_deviation_*)
    leakage_text = {PROVIDER: "verdict and which list entries lie within tau (semi-honest). A malicious "
                              "provider that swaps its test points reads, per list entry, whether the "
                              "distance lies in any tau+1-point set it chooses, unseen by the second server "
                              "(measured, quick profile: near misses in (tau, 2 tau + 1] for 5% [1.7%, 13.7%] "
                              "of 60 benign images; mpc_deviation_near_miss_rate)",
                    SECOND_SERVER: "verdict and which list entries lie within tau",
                    DEALER: "nothing (the dealer sees no image data)"}
    trust = "provider and second server do not collude (nor with the dealer); semi-honest servers"
    matching = "fuzzy"
    description = "Additive shares of the hash bits to two servers; Beaver-triple product tree for the threshold test"
    # ~1.5 kB of triples and openings per list entry and message: 150 MB per message at 10^5
    list_sample = (10_000, 4)

    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        hs = db.hashes_for(self.hasher.name)
        bits = np.unpackbits(hs, axis=1).astype(np.uint64) if len(hs) else np.zeros((0, self.hasher.bits), np.uint64)
        prov_keys = KeyPair.generate(ctx.random_bytes)
        with ctx.role(SECOND_SERVER):
            second_keys = KeyPair.generate(ctx.random_bytes)
            # the second server holds the same public list (it is the hotline's list)
            ctx.send(SECOND_SERVER, PROVIDER, "second-server key", second_keys.public_bytes)
        # shared permutation seed for the opened vector (both servers know it; the device does not)
        perm_seed = int.from_bytes(ctx.random_bytes(8), "big")
        ctx.send(PROVIDER, SECOND_SERVER, "permutation seed", perm_seed.to_bytes(8, "big"))
        state = {"bits": bits, "prov": prov_keys, "second": second_keys, "perm_seed": perm_seed,
                 "seen": set()}
        bundle = wire.pack(b"MPC1", [prov_keys.public_bytes, second_keys.public_bytes,
                                     self.hasher.name.encode()])
        return state, bundle

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        pk1, pk2, name = wire.unpack(b"MPC1", bundle, 3, "two-server-mpc bundle")
        if len(pk1) != 32 or len(pk2) != 32 or name.decode(errors="replace") != self.hasher.name:
            raise MalformedMessage("two-server-mpc bundle has bad keys or the wrong hasher")
        return {"pk1": pk1, "pk2": pk2}

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        x = np.unpackbits(self.hasher.hash(image)).astype(np.uint64)
        a = _rand(ctx.rng, x.shape)
        c = (x + P - a) % P
        ad = ctx.binding()
        to_second = seal(state["pk2"], _encode(c), info=SHARE_INFO, ad=ad, random_bytes=ctx.random_bytes)
        ctx.send(DEVICE, SECOND_SERVER, "share", to_second)
        ctx.extra["inbox:second-server"] = to_second  # the bytes the channel delivered to it
        return Prepared(seal(state["pk1"], _encode(a), info=SHARE_INFO, ad=ad, random_bytes=ctx.random_bytes))

    # -- the two servers ----------------------------------------------------------------
    def _distance_share(self, bits: np.ndarray, share: np.ndarray, first: bool) -> np.ndarray:
        # d_j = sum_b [y_jb ? 1 - x_b : x_b]; the constant goes to the first server only
        flip = bits.astype(bool)
        contrib = np.where(flip, (P - share[None, :]) % P, share[None, :])
        d = contrib.sum(axis=1) % P
        if first:
            d = (d + flip.sum(axis=1).astype(np.uint64)) % P
        return d

    def _multiply(self, x1, y1, x2, y2, ctx: MessageContext):
        """One layer of Beaver multiplications on shared vectors; one exchange each way."""
        n = len(x1)
        with ctx.role(DEALER):
            a, b = _rand(ctx.rng, n), _rand(ctx.rng, n)
            cc = _mulmod(a, b)
            a1, b1, c1 = _rand(ctx.rng, n), _rand(ctx.rng, n), _rand(ctx.rng, n)
            a2, b2, c2 = (a + P - a1) % P, (b + P - b1) % P, (cc + P - c1) % P
            t1 = ctx.send(DEALER, PROVIDER, "triples", _encode(np.concatenate([a1, b1, c1])))
            t2 = ctx.send(DEALER, SECOND_SERVER, "triples", _encode(np.concatenate([a2, b2, c2])))
        t1 = _decode(t1, 3 * n, "triples")
        a1, b1, c1 = t1[:n], t1[n:2 * n], t1[2 * n:]
        e1, f1 = (x1 + P - a1) % P, (y1 + P - b1) % P
        m1 = ctx.send(PROVIDER, SECOND_SERVER, "open e,f", _encode(np.concatenate([e1, f1])))
        with ctx.role(SECOND_SERVER):
            t2 = _decode(t2, 3 * n, "triples")
            a2, b2, c2 = t2[:n], t2[n:2 * n], t2[2 * n:]
            e2, f2 = (x2 + P - a2) % P, (y2 + P - b2) % P
            m2 = ctx.send(SECOND_SERVER, PROVIDER, "open e,f", _encode(np.concatenate([e2, f2])))
            o1 = _decode(m1, 2 * n, "opening")
            e, f = (e2 + o1[:n]) % P, (f2 + o1[n:]) % P
            z2 = (c2 + _mulmod(e, b2) + _mulmod(f, a2)) % P
        o2 = _decode(m2, 2 * n, "opening")
        e, f = (e1 + o2[:n]) % P, (f1 + o2[n:]) % P
        z1 = (c1 + _mulmod(e, b1) + _mulmod(f, a1) + _mulmod(e, f)) % P
        return z1, z2

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return  # a text-only message (or a stripped payload: E2EE hides which)
        n_bits = self.hasher.bits
        ad = ctx.binding()
        if (ctx.account, ctx.message_id) in state["seen"]:
            from e2eebench.protocols.errors import ReplayError
            raise ReplayError("share for this message was already processed")
        raw_a = open_sealed(state["prov"], payload, info=SHARE_INFO, ad=ad)
        ctx.opened(PROVIDER, "share", raw_a)
        a = _decode(raw_a, n_bits, "share")
        second_blob = ctx.extra.get("inbox:second-server")
        if second_blob is None:
            raise MalformedMessage("the second server received no share for this message")
        with ctx.role(SECOND_SERVER):
            raw_c = open_sealed(state["second"], second_blob, info=SHARE_INFO, ad=ad)
            ctx.opened(SECOND_SERVER, "share", raw_c)
            c = _decode(raw_c, n_bits, "share")
            d2 = self._distance_share(state["bits"], c, first=False)
        state["seen"].add((ctx.account, ctx.message_id))
        d1 = self._distance_share(state["bits"], a, first=True)
        if len(d1) == 0:
            ctx.verdict(PROVIDER, False)
            return
        # factors (d - i), i = 0..tau, and a random mask r as one more factor
        tau = self.threshold
        idx = self.test_points(len(d1))
        f1 = (d1[:, None] + P - idx) % P
        f2 = np.repeat(d2[:, None], tau + 1, axis=1)
        m1, m2 = self._mask_factors(len(d1), ctx)
        f1 = np.concatenate([f1, m1], axis=1)
        f2 = np.concatenate([f2, m2], axis=1)
        while f1.shape[1] > 1:
            if f1.shape[1] % 2:
                one1 = np.ones((len(f1), 1), np.uint64)
                f1 = np.concatenate([f1, one1], axis=1)
                f2 = np.concatenate([f2, np.zeros((len(f2), 1), np.uint64)], axis=1)
            x1, y1 = f1[:, 0::2].ravel(), f1[:, 1::2].ravel()
            x2, y2 = f2[:, 0::2].ravel(), f2[:, 1::2].ravel()
            z1, z2 = self._multiply(x1, y1, x2, y2, ctx)
            f1, f2 = z1.reshape(len(f1), -1), z2.reshape(len(f2), -1)
        perm = np.random.default_rng([state["perm_seed"], zlib.crc32(ctx.message_id.encode())]).permutation(len(f1))
        s1, s2 = f1[perm, 0], f2[perm, 0]
        got2 = ctx.send(PROVIDER, SECOND_SERVER, "open result", _encode(s1))
        got1 = ctx.send(SECOND_SERVER, PROVIDER, "open result", _encode(s2))
        opened = (s1 + _decode(got1, len(s1), "result")) % P
        ctx.opened(PROVIDER, "opened result", _encode(opened))
        with ctx.role(SECOND_SERVER):
            opened2 = (s2 + _decode(got2, len(s2), "result")) % P
        zeros = int((opened == 0).sum())
        match = zeros > 0
        ctx.verdict(PROVIDER, match)
        ctx.verdict(SECOND_SERVER, bool((opened2 == 0).any()))
        ctx.learn(PROVIDER, "match_count", zeros)
        ctx.learn(SECOND_SERVER, "match_count", int((opened2 == 0).sum()))
        if match:
            # both servers know the permutation, so they can tell which entries are within tau
            entries = sorted(int(perm[k]) for k in np.flatnonzero(opened == 0))
            ctx.learn(PROVIDER, "report", json.dumps({"message": ctx.message_id, "entries_within_threshold": zeros,
                                                      "entries": entries}))

    def test_points(self, n_entries: int) -> np.ndarray:
        """The points i the provider subtracts from its own distance shares, per list entry (rows):
        0..tau. They are the provider's local input, so the second server cannot check them (the
        deviating-server attack replaces them: evaluation/leakage/mpc_deviation.py)."""
        return np.broadcast_to(np.arange(self.threshold + 1, dtype=np.uint64), (n_entries, self.threshold + 1))

    def _mask_factors(self, n: int, ctx: MessageContext) -> tuple[np.ndarray, np.ndarray]:
        """Shares of the two mask factors per entry: (r_a, 0) from the provider, (0, r_b) from the
        second server. Their product is a non-zero mask neither server knows on its own."""
        ra = _rand(ctx.rng, (n, 1)) % (P - 1) + 1
        with ctx.role(SECOND_SERVER):
            rb = _rand(ctx.rng, (n, 1)) % (P - 1) + 1
        zero = np.zeros((n, 1), np.uint64)
        return np.concatenate([ra, zero], axis=1), np.concatenate([zero, rb], axis=1)
