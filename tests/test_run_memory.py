"""A run holds one scheme at a time and keeps its bytes on disk, with the same results.

The ledger spills received and opened bytes to a temporary file; the party views are built on
access from an index of it; the canary scan is a vectorised exact multi-needle search. Each is
checked here against the plain in-memory way of doing the same thing.
"""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.evaluation.data.workload import WorkloadConfig
from e2eebench.evaluation.leakage.views import ENVELOPE_LABELS, MessageView, _blank, party_views
from e2eebench.evaluation.run.metrics import NeedleScan
from e2eebench.evaluation.run.runner import RunConfig, prepare, run_scheme
from e2eebench.evaluation.run.scheduling import run_schemes
from e2eebench.protocols.channel import DEVICE, PROVIDER, Channel, Ledger
from e2eebench.protocols.errors import ProtocolError
from e2eebench.protocols.messaging import parse_envelope


def test_needle_scan_equals_substring_search():
    rng = np.random.default_rng(7)
    needles = [rng.integers(0, 256, int(n)).astype(np.uint8).tobytes() for n in rng.integers(3, 70, 200)]
    needles += [needles[0][:9], needles[1] + b"x"]           # shared prefixes: both must be told apart
    chunks = []
    for i in range(40):
        c = rng.integers(0, 256, int(rng.integers(0, 5000))).astype(np.uint8).tobytes()
        if i % 2:
            n = needles[i]
            at = int(rng.integers(0, len(c) + 1))
            c = c[:at] + n + c[at:]
        if i % 7 == 0:
            c += needles[i + 1][:-1]                          # a truncated needle at the end is no hit
        chunks.append(c)
    chunks += [needles[0][:9], needles[1]]
    scan = NeedleScan(needles)
    for c in chunks:
        want = {j for j, n in enumerate(needles) if n in c}
        assert scan.found(c) == want
    assert any(scan.found(c) for c in chunks)


def test_spilled_ledger_reads_back_what_was_recorded():
    mem, disk = Ledger(), Ledger(spill=True)
    rng = np.random.default_rng(1)
    for ledger in (mem, disk):
        ch = Channel(ledger)
        r = np.random.default_rng(1)
        for i in range(50):
            with ch.exchange(f"m{i}"):
                ch.send(DEVICE, PROVIDER, "envelope", r.bytes(int(r.integers(0, 3000))))
                ledger.record_opened(PROVIDER, "hash", r.bytes(32), f"m{i}")
    del rng
    assert list(disk.received[PROVIDER]) == list(mem.received[PROVIDER])
    assert list(disk.opened[PROVIDER]) == list(mem.opened[PROVIDER])
    assert disk.received[PROVIDER][17] == mem.received[PROVIDER][17]
    assert len(disk.received[PROVIDER]) == 50
    assert b"".join(disk.received_bytes(PROVIDER)) == b"".join(mem.received_bytes(PROVIDER))


def _eager_views(run, data):
    """The views built the direct way: every row read and parsed, all held in memory."""
    msgs = {m.id: m for m in data.workload.image_messages}
    ran = {o.message_id for o in run.outcomes if o.has_image and o.sent}
    out: dict = {}
    for party, items in run.ledger.received.items():
        for t, raw in items:
            if t.message_id not in ran:
                continue
            m = msgs[t.message_id]
            ids = (m.sender.encode(), m.recipient.encode(), m.id.encode())
            v = out.setdefault(party, {}).setdefault(t.message_id, MessageView())
            if t.label in ENVELOPE_LABELS:
                try:
                    env = parse_envelope(raw)
                except ProtocolError:
                    env = None
                if env is not None:
                    v.payload_lengths.append(len(env.payload))
                    v.sizes.append(len(env.payload))
                    v.raw += [_blank(env.payload, ids), env.ciphertext]
                    v.bodies.append(env.ciphertext)
                    continue
            v.sizes.append(t.size)
            v.raw.append(_blank(raw, ids))
    for party, items in run.ledger.opened.items():
        for mid, label, plain in items:
            if mid in ran:
                m = msgs[mid]
                out.setdefault(party, {}).setdefault(mid, MessageView()).opened.append(
                    (label, _blank(plain, (m.sender.encode(), m.recipient.encode(), m.id.encode()))))
    return out


@pytest.fixture(scope="module")
def data():
    cfg = RunConfig(image_size=128, n_known=6, n_benign=12, seed=5, profile="conformance",
                    workload=WorkloadConfig(n_accounts=6, days=2, messages_per_account_per_day=2.0,
                                            offender_fraction=0.34))
    return prepare(cfg)


@pytest.mark.parametrize("name", ["server-side", "two-server-mpc"])
def test_lazy_views_equal_eager_views(data, name):
    run = run_scheme(name, data)
    lazy, eager = party_views(run, data), _eager_views(run, data)
    assert list(lazy) == list(eager)
    for party in eager:
        assert list(lazy[party]) == list(eager[party])
        for mid, v in eager[party].items():
            assert lazy[party][mid] == v
    assert party_views(run, data) is lazy      # indexed once per run
    assert sum(len(v) for v in eager.values()) > 0


def test_runs_freed_unless_kept(data):
    kept, ms_kept = run_schemes(data, ["e2ee-no-detection", "on-device-list"], ())
    freed, ms_freed = run_schemes(data, ["e2ee-no-detection", "on-device-list"], (), keep_runs=False)
    assert [r.name for r in kept] == ["e2ee-no-detection", "on-device-list"] and freed == []
    untimed = lambda ms: sorted((m.scheme, m.metric, str(m.params), m.value, m.n) for m in ms
                                if m.unit not in ("ms", "s"))
    assert untimed(ms_freed) == untimed(ms_kept)


def test_forked_pool_equals_in_process(data):
    from e2eebench.evaluation.api import MEASUREMENTS
    from e2eebench.evaluation.run.scheduling import PROCESSES, forked_pool_usable
    if not forked_pool_usable():
        pytest.skip("no fork start method here")
    names = ["server-side", "psi-ad", "e2ee-no-detection"]
    _, local = run_schemes(data, names, MEASUREMENTS, keep_runs=False)
    runs, forked = run_schemes(data, names, MEASUREMENTS, scheduler=PROCESSES)
    untimed = lambda ms: [(m.scheme, m.metric, str(m.params), m.value, m.n) for m in ms
                          if m.unit not in ("ms", "s", "cores", "CPU hours") and "/s" not in m.unit]
    assert runs == []
    assert untimed(forked) == untimed(local)      # same rows, same order
    assert {m.scheme for m in forked} == set(names)
