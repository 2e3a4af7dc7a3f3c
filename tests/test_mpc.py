"""two-server-mpc: the opened masked values must not let either server read the distances."""
from __future__ import annotations

import numpy as np
from PIL import Image

from e2eebench.clientside.hashing import get_hasher, hamming
from e2eebench.protocols import mpc
from e2eebench.protocols.channel import PROVIDER, SECOND_SERVER, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.mpc import P, TwoServerMPC
from e2eebench.server.database import KnownHashDatabase


def _ctx(ch: Channel, mid: str, seed: int) -> MessageContext:
    return MessageContext(mid, "acct-0", ch, PartyClock(), np.random.default_rng(seed))


def test_no_single_server_can_unmask_the_distances(monkeypatch):
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    hasher = get_hasher("pdq")
    h = hasher.hash(img)
    hs = rng.integers(0, 256, (6, hasher.nbytes), dtype=np.uint8)  # far from h: no match
    db = KnownHashDatabase([f"k{i}" for i in range(6)], {"pdq": hs})
    scheme = TwoServerMPC(hasher, threshold=4)
    ch = Channel(Ledger())
    pstate, bundle = scheme.provider_setup(db, _ctx(ch, "setup", 1))
    dstate = scheme.device_load(bundle, "acct-0", _ctx(ch, "load", 2))
    masks = {}
    orig = TwoServerMPC._mask_factors

    def spy(self, n, ctx):
        masks["m"] = orig(self, n, ctx)
        return masks["m"]

    monkeypatch.setattr(TwoServerMPC, "_mask_factors", spy)
    ctx = _ctx(ch, "m1", 3)
    payload = scheme.device_prepare(dstate, img, ctx).payload
    scheme.provider_receive(pstate, payload, ctx)
    assert not any(x.value for x in ctx.ledger.learned_by(PROVIDER, "verdict"))
    # the opened vector, from the bytes each server received in the last exchange
    s1 = mpc._decode([d for t, d in ctx.ledger.received[SECOND_SERVER] if t.label == "open result"][-1], 6, "r")
    s2 = mpc._decode([d for t, d in ctx.ledger.received[PROVIDER] if t.label == "open result"][-1], 6, "r")
    opened = (s1 + s2) % P
    perm = np.random.default_rng([pstate["perm_seed"], __import__("zlib").crc32(b"m1")]).permutation(6)
    d = hamming(hs, h)[perm].astype(object)
    prod = [int(np.prod([(int(x) - i) % P for i in range(5)], dtype=object)) % P for x in d]
    ratio = [int(o) * pow(q, -1, P) % P for o, q in zip(opened, prod)]  # the effective mask r
    m1, m2 = masks["m"]
    own1 = {int(v) for v in m1[perm].ravel() if v}
    own2 = {int(v) for v in m2[perm].ravel() if v}
    # a server holding r itself could divide it out and read prod(d - i), i.e. each distance
    assert not own1 & set(ratio), "the provider alone knows the mask"
    assert not own2 & set(ratio), "the second server alone knows the mask"


def _flip(h: np.ndarray, k: int, rng) -> np.ndarray:
    bits = np.unpackbits(h).copy()
    idx = rng.choice(len(bits), k, replace=False)
    bits[idx] ^= 1
    return np.packbits(bits)


def test_deviating_provider_reads_near_misses_unnoticed():
    """The deviating-server attack, against the real protocol: the provider swaps its test points
    for the band (tau, 2 tau + 1] and reads exactly which entries lie in it; the honest provider
    learns no match; the second server's view is the same size and shape."""
    from e2eebench.evaluation.leakage.mpc_deviation import attack
    rng = np.random.default_rng(11)
    hasher = get_hasher("pdq")
    imgs = [(f"m{i}", Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))) for i in range(4)]
    hs = [hasher.hash(im) for _, im in imgs]
    tau = 8
    # entry 0: 12 bits from image 0 (in the band 9..17); entry 1: 30 from image 1 (outside);
    # entry 2: 17 from image 2 (the band's edge); entry 3: random
    rows = [_flip(hs[0], 12, rng), _flip(hs[1], 30, rng), _flip(hs[2], 17, rng),
            rng.integers(0, 256, hasher.nbytes, dtype=np.uint8)]
    db = KnownHashDatabase([f"k{i}" for i in range(4)], {"pdq": np.stack(rows)})
    scheme = TwoServerMPC(hasher, threshold=tau)
    r = attack(scheme, hasher, db, imgs, seed=2)
    read = np.stack(r["read"])
    assert read[0, 0] and read[2, 2] and not read[1].any() and not read[3].any(), read
    assert (read == np.stack(r["truth"])).all()
    assert not any(r["detected"])
    # the honest protocol on the same images: no entry within tau, so no match is learned
    honest = TwoServerMPC(hasher, threshold=tau)
    ch = Channel(Ledger())
    pstate, bundle = honest.provider_setup(db, _ctx(ch, "setup", 1))
    dstate = honest.device_load(bundle, "acct-0", _ctx(ch, "load", 2))
    ctx = _ctx(ch, "m0", 3)
    honest.provider_receive(pstate, honest.device_prepare(dstate, imgs[0][1], ctx).payload, ctx)
    assert [x.value for x in ctx.ledger.learned_by(PROVIDER, "verdict")] == [False]
