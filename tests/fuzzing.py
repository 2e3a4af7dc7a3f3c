"""Fuzzing the decoders that read untrusted bytes: a table of decoders, each with a factory of
valid inputs, and a seeded mutation engine.

Contract for every input: a typed project error (``E2EEBenchError``) or acceptance; never any
other exception; never a crash of a native library (decoders that reach C++ -- openmined-psi's
protobuf handling, SEAL through TenSEAL -- run in a child process, so a crash is counted, not
suffered); and, for formats that promise integrity (AEAD, a digest, a root, a checksum), never
acceptance of altered bytes or of a valid input replayed into another account or message.

Run the full profile (at least 100,000 inputs per decoder) with::

    python tests/fuzzing.py --inputs 100000            # every decoder, a report table
    python tests/fuzzing.py --entry envelope --inputs 5000

or ``pytest -m fuzz`` (``E2EEBENCH_FUZZ_INPUTS`` sets the count). The default test run uses a
reduced profile (tests/test_fuzz.py). When a wire format changes, update its entry's factory.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from e2eebench.protocols.errors import E2EEBenchError

SAME, OTHER_ACCOUNT, OTHER_MESSAGE = "same", "other-account", "other-message"
CHUNK = 20_000   # inputs per child process for native decoders (a crash loses one chunk, is counted)


@dataclass
class Target:
    valid: bytes
    decode: Callable[[bytes, str], Any]        # (bytes, context) -> anything, or a typed error
    others: list[bytes] = field(default_factory=list)   # other valid inputs (splices, swaps)
    contexts: tuple[str, ...] = ()             # replays the decoder must refuse (authenticated)
    wire_magic: bytes | None = None            # a wire.pack record: mutate fields and repack
    exempt: Callable[[bytes], bool] = lambda b: False   # inputs that mean something else by design


@dataclass
class Entry:
    name: str
    build: Callable[[], Target]
    authenticated: bool
    native: bool = False
    note: str = ""


# --------------------------------------------------------------------------- mutation engine
INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]


def _flip(b: bytearray, rng) -> None:
    for _ in range(int(rng.integers(1, 4))):
        if b:
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))


def mutate(t: Target, rng: np.random.Generator) -> bytes:
    """One altered input: random bytes, truncation, extension, length fields, bit flips,
    swapped or spliced fields, or a field-level edit of a wire record (never the valid input)."""
    out = _mutate(t, rng)
    return out if out != t.valid else out + bytes([int(rng.integers(256))])


def _mutate(t: Target, rng: np.random.Generator) -> bytes:
    v = t.valid
    op = int(rng.integers(11))
    n = len(v)
    if op == 0:                                   # random bytes
        return rng.bytes(int(rng.integers(0, max(2 * n, 64))))
    if op == 1 and n:                             # truncation
        return v[: int(rng.integers(0, n))]
    if op == 2:                                   # extension
        return v + rng.bytes(int(rng.integers(1, 64)))
    b = bytearray(v)
    if op == 3 or not n:                          # bit flips
        _flip(b, rng)
        if bytes(b) == v:
            b.append(0)
        return bytes(b)
    if op == 4:                                   # a length field: an interesting integer, 1-8 bytes
        w = int(rng.choice([1, 2, 4, 8]))
        i = int(rng.integers(0, max(1, n - w + 1)))
        x = int(rng.choice(INTERESTING + [n, n - 1, n + 1, max(0, n - i)])) % (1 << (8 * w))
        b[i:i + w] = x.to_bytes(w, "big" if rng.random() < 0.7 else "little")
        return bytes(b)
    if op == 5 and n > 2:                         # swap two spans
        w = int(rng.integers(1, max(2, n // 4)))
        i, j = sorted(int(x) for x in rng.integers(0, n - w + 1, 2))
        if j < i + w:
            j = min(n - w, i + w)
        b[i:i + w], b[j:j + w] = b[j:j + w], b[i:i + w]
        return bytes(b)
    if op == 6 and t.others:                      # splice with another valid input (cross-message)
        o = t.others[int(rng.integers(len(t.others)))]
        i = int(rng.integers(0, n + 1))
        return v[:i] + o[min(i, len(o)):]
    if op == 7 and n:                             # delete or duplicate a span
        i = int(rng.integers(n))
        w = int(rng.integers(1, max(2, n - i)))
        return bytes(b[:i] + b[i + w:]) if rng.random() < 0.5 else bytes(b[:i + w] + b[i:])
    if op == 8 and n:                             # one byte to a boundary value
        b[int(rng.integers(n))] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF]))
        return bytes(b) if bytes(b) != v else bytes(b) + b"\0"
    if op in (9, 10) and t.wire_magic is not None:  # field-level: the framing stays valid
        from e2eebench.protocols import wire
        fields = wire.unpack(t.wire_magic, v)
        k = int(rng.integers(len(fields)))
        f = bytearray(fields[k])
        r = rng.random()
        if r < 0.25 and len(fields) > 1:          # swapped fields
            k2 = int(rng.integers(len(fields)))
            fields[k], fields[k2] = fields[k2], fields[k]
        elif r < 0.5:
            fields[k] = bytes(f[: int(rng.integers(0, len(f) + 1))])
        elif r < 0.6:
            fields[k] = bytes(f) + rng.bytes(int(rng.integers(1, 16)))
        elif r < 0.7 and t.others:                # the field from another valid input
            try:
                of = wire.unpack(t.wire_magic, t.others[int(rng.integers(len(t.others)))])
                fields[k] = of[k % len(of)]
            except E2EEBenchError:
                _flip(f, rng)
                fields[k] = bytes(f)
        elif r < 0.8 and k + 1 < len(fields) and fields[k]:   # move a byte across a boundary
            fields[k], fields[k + 1] = fields[k][:-1], fields[k][-1:] + fields[k + 1]
        else:
            _flip(f, rng)
            fields[k] = bytes(f) if f else b"\x00"
        out = wire.pack(t.wire_magic, fields)
        return out if out != v else out + b"\0"
    _flip(b, rng)
    return bytes(b) if bytes(b) != v else bytes(b) + b"\0"


def fuzz(entry: Entry, n: int, seed: int = 0, target: Target | None = None) -> dict[str, Any]:
    """Run ``n`` inputs through one decoder in this process; counts and the first failures."""
    t = target or entry.build()
    rng = np.random.default_rng([seed, len(entry.name)])
    res = {"decoder": entry.name, "inputs": 0, "typed_errors": 0, "accepted": 0, "unhandled": 0,
           "altered_accepted": 0, "native_crashes": 0, "examples": []}
    t0 = time.perf_counter()
    for i in range(n):
        ctx = SAME
        if t.contexts and i % 50 == 0:           # replays of the valid input into other contexts
            data, ctx = t.valid, t.contexts[(i // 50) % len(t.contexts)]
        else:
            data = mutate(t, rng)
        res["inputs"] += 1
        try:
            t.decode(data, ctx)
        except E2EEBenchError:
            res["typed_errors"] += 1
            continue
        except Exception as e:   # the contract is broken: record it
            res["unhandled"] += 1
            if len(res["examples"]) < 5:
                res["examples"].append({"kind": "unhandled", "error": f"{type(e).__name__}: {e}"[:200],
                                        "input": data[:64].hex(), "len": len(data)})
            continue
        res["accepted"] += 1
        genuine = (data == t.valid and ctx == SAME) or (ctx == SAME and data in t.others)
        if entry.authenticated and not genuine and not t.exempt(data):
            res["altered_accepted"] += 1
            if len(res["examples"]) < 5:
                res["examples"].append({"kind": "altered accepted", "context": ctx, "input": data[:64].hex(),
                                        "len": len(data)})
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def fuzz_isolated(entry: Entry, n: int, seed: int = 0, chunk: int = CHUNK) -> dict[str, Any]:
    """The same in child processes, ``chunk`` inputs each, so a native crash is counted."""
    total: dict[str, Any] = {"decoder": entry.name, "inputs": 0, "typed_errors": 0, "accepted": 0,
                             "unhandled": 0, "altered_accepted": 0, "native_crashes": 0, "examples": [],
                             "seconds": 0.0}
    done, k = 0, 0
    while done < n:
        m = min(chunk, n - done)
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--entry", entry.name, "--inputs", str(m),
                            "--seed", str(seed * 1000 + k), "--json", "--in-process"],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            total["native_crashes"] += 1
            total["inputs"] += m       # the chunk ran until the crash; count it as a failure
            total["examples"].append({"kind": "crash", "returncode": r.returncode, "stderr": r.stderr[-300:]})
        else:
            part = json.loads(r.stdout.strip().splitlines()[-1])
            for key in ("inputs", "typed_errors", "accepted", "unhandled", "altered_accepted", "seconds"):
                total[key] += part[key]
            total["examples"] += part["examples"][: 5 - len(total["examples"])]
        done += m
        k += 1
    total["seconds"] = round(total["seconds"], 2)
    return total


# --------------------------------------------------------------------------- valid inputs
def _ctx(mid: str = "m1", account: str = "acct-0000", seed: int = 1, channel=None):
    from e2eebench.protocols.channel import Channel, Ledger, MessageContext, PartyClock
    return MessageContext(mid, account, channel or Channel(Ledger()), PartyClock(), np.random.default_rng(seed))


@lru_cache(maxsize=1)
def _small():
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.server.database import KnownHashDatabase
    h = get_hasher("pdq")
    items = get_corpus("dead-leaves", seed=2, size=64).items(8)
    return h, KnownHashDatabase.from_images(items[:4], [h]), items


def _scheme(name: str):
    """A scheme set up on the small list, its provider endpoint on a channel, one device loaded."""
    from e2eebench.protocols.channel import PROVIDER, Channel, Ledger
    from e2eebench.protocols.registry import scheme_class
    h, db, items = _small()
    scheme = scheme_class(name)(h)
    pstate, bundle = scheme.provider_setup(db, _ctx("setup", PROVIDER))
    ch = Channel(Ledger())
    scheme.connect(ch, pstate, lambda account: dstates.get(account))
    dstates = {"acct-0000": scheme.device_load(bundle, "acct-0000", _ctx("bundle", channel=ch))}
    return scheme, pstate, bundle, dstates["acct-0000"], ch, items


def _is_wire(b: bytes) -> bytes | None:
    from e2eebench.protocols import wire
    try:
        wire.unpack(b[:4], b)
        return b[:4]
    except E2EEBenchError:
        return None


def bundle_target(name: str) -> Callable[[], Target]:
    def build() -> Target:
        scheme, _, bundle, _, ch, _ = _scheme(name)
        from e2eebench.protocols.channel import PROVIDER
        h, db, _ = _small()
        # another valid bundle: a fresh setup (fresh keys)
        _, other = scheme.provider_setup(db, _ctx("setup", PROVIDER, seed=9))
        return Target(bytes(bundle), lambda b, c: scheme.device_load(b, "acct-0000", _ctx("bundle", channel=ch)),
                      [bytes(other)], (), _is_wire(bytes(bundle)) if bundle else None)
    return build


def payload_target(name: str) -> Callable[[], Target]:
    def build() -> Target:
        scheme, pstate, _, dstate, ch, items = _scheme(name)
        payloads = []
        from e2eebench.clientside.device import encode_png
        from e2eebench.protocols.messaging import MessageBody
        for i, it in enumerate(items[:2] + items[5:6]):   # two known images, one benign
            c = _ctx(f"m{i}", channel=ch, seed=10 + i)
            prepared = scheme.device_prepare(dstate, it.image, c)
            # the detection payload as it goes into the envelope: device_seal has the last word
            # (an escrow copy, a franking commitment are made from the encoded body)
            body = MessageBody("", encode_png(it.image)).encode()
            p, _ = scheme.device_seal(dstate, body, prepared, c)
            payloads.append(bytes(p))
        valid = payloads[0]
        state = {"n": 0}

        def decode(b: bytes, c: str):
            # a fresh message id per input (the same one for replays), so the replay check of a
            # decoder is exercised only where a replay is meant
            state["n"] += 1
            mid = {SAME: "m0", OTHER_MESSAGE: f"other-{state['n']}"}.get(c, "m0")
            acct = "acct-0001" if c == OTHER_ACCOUNT else "acct-0000"
            if c == SAME and b == valid:
                return None     # the genuine payload was accepted once at setup; again is a replay
            return scheme.provider_receive(pstate, b, _ctx(mid, acct, channel=ch))
        ctxs = (OTHER_ACCOUNT, OTHER_MESSAGE) if valid else ()
        return Target(valid, decode, payloads[1:], ctxs, _is_wire(valid) if valid else None,
                      exempt=lambda b: b == b"")
    return build


def envelope_target() -> Target:
    from e2eebench.protocols.messaging import Identity, Mailbox
    rng = np.random.default_rng(4)
    a, b, c = (Identity.generate(n, rng.bytes) for n in ("acct-0000", "acct-0001", "acct-0002"))
    directory = {i.name: i.bundle() for i in (a, b, c)}
    s = Mailbox(a, directory).session_to("acct-0001", random_bytes=rng.bytes)
    valid = s.encrypt(b"\x01\x00\x00\x00\x02hi\x00\x00\x00\x00", b"payload bytes")
    others = [s.encrypt(b"\x01\x00\x00\x00\x02yo\x00\x00\x00\x00", b"another payload")]
    # the recipient's state after its first message, copied for every input (one-time prekeys
    # are consumed on first use, so a fresh recipient per input would refuse the genuine one)
    import copy
    fresh = {"acct-0001": Mailbox(b, directory), "acct-0002": Mailbox(c, directory)}

    def decode(data: bytes, ctx: str):
        who = "acct-0002" if ctx == OTHER_ACCOUNT else "acct-0001"
        return copy.deepcopy(fresh[who]).open(data)
    return Target(valid, decode, others, (OTHER_ACCOUNT,))


def prekey_bundle_target() -> Target:
    from e2eebench.protocols.messaging import Identity, PrekeyBundle
    rng = np.random.default_rng(8)
    valid = Identity.generate("acct-0000", rng.bytes).bundle()
    other = Identity.generate("acct-0001", rng.bytes).bundle()
    return Target(valid, lambda b, c: PrekeyBundle.decode(b), [other])


def sealed_report_target() -> Target:
    from e2eebench.protocols.crypto import KeyPair
    from e2eebench.protocols.sealed_report import open_report, seal_report
    rng = np.random.default_rng(6)
    keys = KeyPair.generate(rng.bytes)
    info = b"e2eebench fuzz report"
    valid = seal_report(keys.public_bytes, {"entry": 3}, _ctx("m1"), info)
    others = [seal_report(keys.public_bytes, {"entry": 4}, _ctx("m2"), info)]

    def decode(data: bytes, ctx: str):
        c = {SAME: _ctx("m1"), OTHER_ACCOUNT: _ctx("m1", "acct-0009"), OTHER_MESSAGE: _ctx("m9")}[ctx]
        return open_report(keys, data, c, info)
    return Target(valid, decode, others, (OTHER_ACCOUNT, OTHER_MESSAGE), exempt=lambda b: b == b"")


def body_target() -> Target:
    from e2eebench.protocols.messaging import MessageBody
    valid = MessageBody("caption", b"\x89PNG fake image bytes").encode()
    return Target(valid, lambda b, c: MessageBody.decode(b), [MessageBody("x", b"").encode()])


def wire_target() -> Target:
    from e2eebench.protocols import wire
    valid = wire.pack(b"TEST", [b"alpha", b"", b"\x00" * 40])
    return Target(valid, lambda b, c: wire.unpack(b"TEST", b, 3), [wire.pack(b"TEST", [b"b", b"c", b"d"])],
                  wire_magic=b"TEST")


def config_target() -> Target:
    from e2eebench.evaluation.run.config import builtin_config, config_from_dict, toml_table
    valid = builtin_config("quick").read_bytes()
    other = b'[run]\nseed = 3\nschemes = ["server-side"]\n[workload]\nn_accounts = 5\n[schemes.on-device-list]\naction = "block"\n'
    return Target(valid, lambda b, c: config_from_dict(toml_table(b, "config"), "config"), [other])


def sweep_target() -> Target:
    from e2eebench.evaluation.run.config import toml_table
    from e2eebench.evaluation.run.sweep import sweep_cells
    valid = b'[sweep]\nschemes = ["server-side", "on-device-list"]\nlist_sizes = [100, 1000]\nseeds = [0, 1]\n'
    return Target(valid, lambda b, c: sweep_cells(toml_table(b, "sweep"), "sweep"),
                  [b'[sweep]\nthresholds = [20, "default"]\n'])


def psi_setup_target() -> Target:
    """psi-client-learns with an attacker who recomputes the bundle root: the setup message
    reaches the native library (parse, GCS checks, one intersection)."""
    from e2eebench.protocols import wire
    from e2eebench.protocols.psi_openmined import bundle_root
    scheme, _, bundle, _, ch, items = _scheme("psi-client-learns")
    name, setup_b, key, _ = wire.unpack(b"OMP1", bundle, 4)

    def decode(data: bytes, ctx: str):
        st = scheme.device_load(wire.pack(b"OMP1", [name, data, key, bundle_root([name, data, key])]),
                                "acct-0000", _ctx("bundle", channel=ch))
        return scheme.device_prepare(st, items[0].image, _ctx("m-setup", channel=ch))
    return Target(setup_b, decode)


def psi_request_target() -> Target:
    scheme, pstate, _, dstate, ch, items = _scheme("psi-client-learns")
    h = _small()[0]
    valid = dstate["client"].CreateRequest([h.hash(items[0].image).tobytes()]).SerializeToString()
    other = dstate["client"].CreateRequest([h.hash(items[5].image).tobytes()]).SerializeToString()
    return Target(valid, lambda b, c: scheme.provider_answer(pstate, "psi-request", b, _ctx()), [other])


def psi_response_target() -> Target:
    from e2eebench.protocols.psi_openmined import parse_proto
    scheme, pstate, _, dstate, ch, items = _scheme("psi-client-learns")
    h = _small()[0]
    req = dstate["client"].CreateRequest([h.hash(items[0].image).tobytes()]).SerializeToString()
    valid = scheme.provider_answer(pstate, "psi-request", req, _ctx())
    from e2eebench.protocols.errors import MalformedMessage

    def decode(b: bytes, c: str):
        resp = parse_proto("Response", b, "PSI response")
        try:
            return dstate["client"].GetIntersectionSize(dstate["setup"], resp)
        except RuntimeError as e:
            raise MalformedMessage(f"PSI response rejected ({e})") from None
    return Target(valid, decode)


def he_frame_target() -> Target:
    from e2eebench.protocols import crypto_he
    valid = crypto_he._frame(b"FUZZTAG1", [b"part one", b"", b"\x00" * 100])
    return Target(valid, lambda b, c: crypto_he._unframe(b"FUZZTAG1", b, "frame"),
                  [crypto_he._frame(b"FUZZTAG1", [b"x", b"y", b"z"])])


def he_query_target() -> Target:
    """A BFV query ciphertext whose frame checksum the attacker recomputes: the bytes reach
    SEAL's deserializer and the matcher's shape checks (HammingMatcher._parse_query)."""
    from tenseal import sealapi as seal
    from e2eebench.protocols import crypto_he
    h, _, items = _small()
    holder = crypto_he.HammingKeyHolder(crypto_he.BfvParams())
    frame = holder.encrypt_query(h.hash(items[0].image))
    (valid,) = crypto_he._unframe(holder.QTAG, frame, "query", 1)
    other = crypto_he._unframe(holder.QTAG, holder.encrypt_query(h.hash(items[5].image)), "query", 1)[0]

    def decode(b: bytes, c: str):
        ct = crypto_he._from_bytes(seal.Ciphertext, holder.ctx, b, "BFV query ciphertext")
        crypto_he._check_query_ct(ct, holder.ctx, holder.params.slots, "BFV query ciphertext")
        return ct
    return Target(valid, decode, [other])


# --------------------------------------------------------------------------- recipient side
@dataclass
class _World:
    """Two accounts and a third behind the provider's relay, on one scheme: what a recipient's
    app (``Messenger.receive``) parses when the provider delivers a message."""
    scheme: Any
    pstate: Any
    devs: dict
    relay: Any
    items: list
    deliveries: list      # (envelope, stamp) delivered to acct-0001, in order


@lru_cache(maxsize=4)
def _world(name: str) -> _World:
    from e2eebench.clientside.device import Messenger
    from e2eebench.protocols.channel import PROVIDER, Channel, Ledger
    from e2eebench.protocols.messaging import Identity
    from e2eebench.protocols.registry import scheme_class
    from e2eebench.server.relay import PrekeyStore, Relay
    h, db, items = _small()
    params = {"report_rate": 1.0} if name == "user-report-franking" else {}
    scheme = scheme_class(name)(h, **params)
    pstate, bundle = scheme.provider_setup(db, _ctx("setup", PROVIDER))
    rng = np.random.default_rng(12)
    names = ("acct-0000", "acct-0001", "acct-0002")
    ids = {n: Identity.generate(n, rng.bytes) for n in names + (PROVIDER,)}
    prekeys, devs = PrekeyStore(), {}
    ch = Channel(Ledger())
    for n in names:
        devs[n] = Messenger(ids[n], prekeys, scheme, scheme.device_load(bundle, n, _ctx("bundle", n, channel=ch)))
        devs[n].register(_ctx("prekeys", n, channel=ch))
    relay = Relay(scheme, pstate, ids[PROVIDER], prekeys)
    scheme.connect(ch, pstate, lambda a: devs[a].state)
    out = []
    # a known image, a reply (so the next message runs a DH ratchet step), then the fuzzed one
    steps = [("acct-0000", "acct-0001", 0), ("acct-0001", "acct-0000", 5), ("acct-0000", "acct-0001", 1),
             ("acct-0000", "acct-0001", 5)]
    for i, (a, b, k) in enumerate(steps):
        c = _ctx(f"d{i}", a, seed=20 + i, channel=ch)
        c.extra["recipient_judges_abusive"] = k < 4
        sent = devs[a].send(b, c, image=items[k].image)
        d = relay.handle(sent.envelope, c)
        if i < 2:
            devs[b].receive(d, c)
        else:
            out.append((d.envelope, d.stamp))
    return _World(scheme, pstate, devs, relay, items, out)


def _copy_box(dev) -> Any:
    """A copy of a device's mailbox (sessions, identity and prekeys: what opening mutates),
    sharing what opening does not touch (the app, its directory, each session's random source)."""
    import copy
    memo = {id(dev): dev, id(dev.directory): dev.directory}
    for sess in dev.mailbox.sessions.values():
        rnd = getattr(sess, "_random", None)
        if rnd is not None:
            memo[id(rnd)] = rnd
    return copy.deepcopy(dev.mailbox, memo)


def _receive(w: _World, who: str, envelope: bytes, stamp: bytes, mid: str):
    """``who``'s app receives one delivery on a copy of its state (its sessions, prekeys and the
    scheme's provider state are restored for every input)."""
    from e2eebench.protocols.channel import Channel, Ledger
    from e2eebench.protocols.messaging import Delivery
    dev = w.devs[who]
    saved_box, saved_id = dev.mailbox, dev.identity
    box = _copy_box(dev)
    dev.mailbox, dev.identity = box, box.me
    reported = w.pstate.get("reported") if isinstance(w.pstate, dict) else None
    if reported is not None:
        w.pstate["reported"] = set(reported)
    ch = Channel(Ledger())
    w.scheme.connect(ch, w.pstate, lambda a: w.devs[a].state)
    c = _ctx(mid, who, channel=ch)
    c.extra["recipient_judges_abusive"] = True
    try:
        return dev.receive(Delivery(envelope, stamp), c)
    finally:
        dev.mailbox, dev.identity = saved_box, saved_id
        if reported is not None:
            w.pstate["reported"] = reported


def delivery_target(name: str) -> Callable[[], Target]:
    """The envelope as delivered to its recipient (an established session, after a DH ratchet
    step); for franking with its genuine stamp, and the recipient reports every image, so a
    delivery it accepts also passes the provider's check of the report."""
    def build() -> Target:
        w = _world(name)
        (env, stamp), (other, other_stamp) = w.deliveries
        stamps = {other: other_stamp}   # each genuine envelope with its own stamp

        def decode(b: bytes, c: str):
            return _receive(w, "acct-0002" if c == OTHER_ACCOUNT else "acct-0001", b, stamps.get(b, stamp), "d9")
        return Target(env, decode, [other], (OTHER_ACCOUNT,))
    return build


def franking_stamp_target() -> Target:
    """The provider's stamp beside a genuine franked envelope: the recipient checks its length,
    reports the message (report rate 1), and the provider checks its own tag on the report."""
    from dataclasses import replace
    from e2eebench.protocols.channel import RECIPIENT, Channel, Ledger
    w = _world("user-report-franking")
    (env, stamp), _ = w.deliveries
    dev = w.devs["acct-0001"]
    # the stamp travels beside the envelope and Mailbox.open passes it through untouched: the
    # envelope is opened once, and every input goes through the scheme's recipient role
    opened = _copy_box(dev).open(env, stamp)

    def decode(b: bytes, c: str):
        reported = w.pstate["reported"]
        w.pstate["reported"] = set(reported)
        ch = Channel(Ledger())
        w.scheme.connect(ch, w.pstate, lambda a: w.devs[a].state)
        ctx = _ctx("d9", "acct-0001", channel=ch)
        ctx.extra["recipient_judges_abusive"] = True
        try:
            with ctx.role(RECIPIENT):
                return w.scheme.recipient_receive(dev.state, replace(opened, stamp=b), ctx)
        finally:
            w.pstate["reported"] = reported
    # no other genuine input: another message's stamp is an altered stamp for this envelope
    return Target(stamp, decode)


def _franking_report():
    from e2eebench.protocols.franking import encode_report
    from e2eebench.protocols.messaging import MessageBody
    w = _world("user-report-franking")
    reports = []
    for env, stamp in w.deliveries:
        d = _copy_box(w.devs["acct-0001"]).open(env, stamp)
        assert MessageBody.decode(d.body).image
        reports.append(encode_report(d.body, d.sealed, d.sender, "acct-0001", stamp))
    return w, reports


def franking_report_target() -> Target:
    """The sealed report as the provider receives it (HPKE to its report key, bound to the
    reporter's account and the message)."""
    from e2eebench.protocols.franking import REPORT_LABEL, seal_report
    w, reports = _franking_report()
    key = w.devs["acct-0001"].state["report_key"]
    valid = seal_report(key, reports[0], _ctx("r1", "acct-0001"))
    others = [seal_report(key, reports[1], _ctx("r1", "acct-0001", seed=3))]

    def decode(b: bytes, c: str):
        acct = "acct-0002" if c == OTHER_ACCOUNT else "acct-0001"
        mid = "r2" if c == OTHER_MESSAGE else "r1"
        reported = w.pstate["reported"]
        w.pstate["reported"] = set(reported)
        try:
            return w.scheme.provider_answer(w.pstate, REPORT_LABEL, b, _ctx(mid, acct))
        finally:
            w.pstate["reported"] = reported
    return Target(valid, decode, others, (OTHER_ACCOUNT, OTHER_MESSAGE))


def franking_report_fields_target() -> Target:
    """The report's fields (body, franking key, sender, recipient, stamp) as a dishonest reporter
    writes them, sealed correctly: only the provider's tag and the commitment stand between an
    altered report and a verdict on a message nobody sent."""
    from e2eebench.protocols.franking import REPORT_LABEL, REPORT_MAGIC, seal_report
    w, reports = _franking_report()
    key = w.devs["acct-0001"].state["report_key"]

    def decode(b: bytes, c: str):
        reported = w.pstate["reported"]
        w.pstate["reported"] = set(reported)
        try:
            ctx = _ctx("r1", "acct-0001")
            return w.scheme.provider_answer(w.pstate, REPORT_LABEL, seal_report(key, b, ctx), ctx)
        finally:
            w.pstate["reported"] = reported
    return Target(reports[0], decode, reports[1:], wire_magic=REPORT_MAGIC)


def he_result_target() -> Target:
    """The BFV result a device decrypts (he-hamming, key held on the device), as the provider
    sends it: the provider is the attacker here and recomputes the frame checksum, so the bytes
    reach SEAL's deserializer, the size and noise-budget checks and the decryption."""
    from e2eebench.protocols import crypto_he
    from e2eebench.protocols.channel import DEVICE
    scheme, pstate, _, dstate, ch, items = _scheme("he-hamming")
    results: list[bytes] = []
    answer = ch.endpoints[DEVICE]

    def capture(label, req, c):
        results.append(bytes(req))
        return answer(label, req, c)
    ch.endpoints[DEVICE] = capture
    for i, k in enumerate((0, 5)):
        p = scheme.device_prepare(dstate, items[k].image, _ctx(f"r{i}", channel=ch, seed=30 + i)).payload
        scheme.provider_receive(pstate, p, _ctx(f"r{i}", channel=ch))
    ch.endpoints[DEVICE] = answer
    holder = dstate["holder"]
    parts = crypto_he._unframe(holder.RTAG, results[0], "BFV result")
    other = crypto_he._unframe(holder.RTAG, results[1], "BFV result")[0]

    def decode(b: bytes, c: str):
        return scheme.decrypt(holder, crypto_he._frame(holder.RTAG, [b] + parts[1:]))
    return Target(parts[0], decode, [other])


def he_verdict_target(name: str) -> Target:
    """The verdict an HE key holder returns for one message, as the provider opens it: the
    device's sealed verdict report (device placement, ``_open_verdict``) or the third party's
    ``he verdict`` message (``_open_tp_verdict``). Both are sealed to the provider and bound to
    account and message; the genuine inputs are captured from real rounds."""
    from e2eebench.protocols.channel import DEVICE
    scheme, pstate, _, dstate, ch, items = _scheme(name)
    verdicts: list[bytes] = []
    if scheme.mode == "device":
        answer = ch.endpoints[DEVICE]

        def capture(label, req, c):
            out = answer(label, req, c)
            verdicts.append(bytes(out))
            return out
        ch.endpoints[DEVICE] = capture
        opener = scheme._open_verdict
    else:
        opener = scheme._open_tp_verdict

        def capture_tp(state, back, c):
            verdicts.append(bytes(back))
            return opener(state, back, c)
        scheme._open_tp_verdict = capture_tp
    try:
        for i, k in enumerate((0, 5)):   # a known image, then a benign one
            p = scheme.device_prepare(dstate, items[k].image, _ctx(f"v{i}", channel=ch, seed=40 + i)).payload
            # each message its own randomness, as in a run (the key holder's seal draws from it)
            scheme.provider_receive(pstate, p, _ctx(f"v{i}", channel=ch, seed=50 + i))
    finally:
        if scheme.mode == "device":
            ch.endpoints[DEVICE] = answer
        else:
            del scheme._open_tp_verdict
    assert len(verdicts) == 2

    def decode(b: bytes, c: str):
        acct = "acct-0001" if c == OTHER_ACCOUNT else "acct-0000"
        # each genuine verdict in its own message; a replay in another account or message
        mid = "v9" if c == OTHER_MESSAGE else "v1" if b == verdicts[1] else "v0"
        return opener(pstate, b, _ctx(mid, acct))
    return Target(verdicts[0], decode, verdicts[1:], (OTHER_ACCOUNT, OTHER_MESSAGE))


AUTH_BUNDLES = {"on-device-list", "on-device-bloom", "on-device-lsh-bloom", "hash-upload", "partial-hash",
                "psi-client-learns"}
AUTH_PAYLOADS = {"server-side", "on-device-list", "on-device-bloom", "on-device-lsh-bloom", "hash-upload",
                 "partial-hash", "psi-client-learns", "enclave", "he-hamming", "he-hamming-3p", "he-cosine",
                 "exceptional-access"}
# a psi-ad voucher whose Q is altered finds no table entry and reads as a non-match: by design the
# provider cannot tell it from a voucher for an unknown image (its AEAD refuses any other change)
VOUCHERS = {"psi-ad", "tpsi-ad", "psi-ad-lsh"}
NATIVE = {"psi-client-learns", "he-hamming", "he-hamming-3p", "he-cosine"}
HE = {"he-hamming", "he-hamming-3p", "he-cosine"}
# what a recipient's app parses: E2EE with the scheme's recipient role (franking), E2EE without
# one (every other E2EE scheme: the recipient only opens the envelope), transport from the provider
DELIVERY = ("user-report-franking", "on-device-list", "server-side")
# the verdict an HE key holder returns to the provider: the device's sealed report (he-hamming,
# key on the device) and the third party's verdict (he-hamming-3p, he-cosine: third-party keys)
HE_VERDICTS = ("he-hamming", "he-hamming-3p", "he-cosine")


def entries() -> list[Entry]:
    from e2eebench.protocols.registry import SCHEMES
    out = [
        Entry("envelope", envelope_target, True),
        Entry("message-body", body_target, False, note="inside the envelope's AEAD"),
        Entry("wire-record", wire_target, False, note="framing only"),
        Entry("sealed-report", sealed_report_target, True),
        Entry("prekey-bundle", prekey_bundle_target, False,
              note="X3DH: the signed prekey is signed, one-time prekeys are not (by design)"),
        Entry("run-config", config_target, False, note="a user's own file"),
        Entry("sweep-config", sweep_target, False, note="a user's own file"),
        Entry("he-frame", he_frame_target, True, note="checksum"),
        Entry("he-query-ciphertext", he_query_target, False, native=True, note="SEAL; checksum recomputed"),
        Entry("psi-setup", psi_setup_target, False, native=True, note="root recomputed by the attacker"),
        Entry("psi-request", psi_request_target, False, native=True),
        Entry("psi-response", psi_response_target, False, native=True),
        Entry("he-result", he_result_target, False, native=True,
              note="SEAL; no integrity against the provider that computes it (checksum recomputed)"),
        Entry("franking-stamp", franking_stamp_target, True, note="the provider's tag, checked on the report"),
        Entry("franking-report", franking_report_target, True),
        Entry("franking-report-fields", franking_report_fields_target, True,
              note="the provider's tag and the commitment"),
    ]
    for name in DELIVERY:
        out.append(Entry(f"delivery:{name}", delivery_target(name), True))
    for name in HE_VERDICTS:
        out.append(Entry(f"he-verdict:{name}", lambda name=name: he_verdict_target(name), True))
    for name in sorted(SCHEMES):
        out.append(Entry(f"bundle:{name}", bundle_target(name), name in AUTH_BUNDLES or name in HE,
                         native=name in NATIVE, note="checksum (SEAL frames)" if name in HE else ""))
        note = ("" if name in AUTH_PAYLOADS else
                "an altered Q reads as a non-match (indistinguishable by design)" if name in VOUCHERS else
                "no integrity at this layer (the envelope's AEAD binds it)")
        out.append(Entry(f"payload:{name}", payload_target(name), name in AUTH_PAYLOADS, note=note))
    return out


def entry(name: str) -> Entry:
    for e in entries():
        if e.name == name:
            return e
    raise SystemExit(f"no fuzz entry {name!r}")


def report(results: list[dict[str, Any]]) -> str:
    lines = ["| decoder | integrity checked | inputs | typed errors | accepted | unhandled | altered accepted | native crashes | seconds |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['decoder']} | {r.get('integrity', '')} | {r['inputs']:,} | {r['typed_errors']:,} | "
                     f"{r['accepted']:,} | {r['unhandled']} | {r['altered_accepted']} | {r['native_crashes']} | "
                     f"{r['seconds']} |")
    return "\n".join(lines)


def run_all(n: int, seed: int = 0, names: list[str] | None = None, log: str | None = None,
            chunk: int = CHUNK) -> list[dict[str, Any]]:
    out = []
    table = {e.name: e for e in entries()}
    for name in names or list(table):
        e = table[name]
        r = fuzz_isolated(e, n, seed, chunk) if e.native else fuzz(e, n, seed)
        r["integrity"] = "yes" if e.authenticated else ("no: " + e.note if e.note else "no")
        out.append(r)
        if log:
            with open(log, "a") as fh:
                fh.write(json.dumps(r) + "\n")
        print(f"{e.name}: {r['inputs']:,} inputs, {r['unhandled']} unhandled, {r['altered_accepted']} altered "
              f"accepted, {r['native_crashes']} crashes, {r['seconds']} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--entry", action="append")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--log", help="append each decoder's result as a JSON line to this file")
    ap.add_argument("--chunk", type=int, default=CHUNK, help="inputs per child process (native decoders)")
    ap.add_argument("--in-process", action="store_true", help="(internal) one chunk, in this process")
    a = ap.parse_args()
    if a.in_process:
        print(json.dumps(fuzz(entry(a.entry[0]), a.inputs, a.seed)))
        return
    results = run_all(a.inputs, a.seed, a.entry, a.log, a.chunk)
    print(json.dumps(results) if a.json else report(results))


if __name__ == "__main__":
    main()
