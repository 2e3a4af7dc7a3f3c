"""The conformance suite every registered scheme runs automatically.

Generated from the registry: a new scheme gets these tests without writing any. They
check the protocol contract, not a scheme's accuracy: verdicts equal plaintext
matching where the scheme claims exact or fuzzy matching, only bytes cross between
parties, the provider sees no benign image or hash it did not declare, every message
arrives bit-exact, and malformed payloads and bundles raise typed errors.
"""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.protocols.channel import (DEVICE, PROVIDER, RECIPIENT, SERVER_PARTIES, Channel, Ledger,
                                         MessageContext, PartyClock)
from e2eebench.protocols.errors import E2EEBenchError, ProtocolError
from e2eebench.protocols.framework import EU_CATEGORIES, FAMILIES, Scheme, declared_leaks
from e2eebench.protocols.messaging import MessageBody
from e2eebench.protocols.registry import SCHEMES
from e2eebench.evaluation.leakage.adversary import PROBE_QUANTITY, adversary_probes, exceeds_declaration
from e2eebench.evaluation.run.metrics import canary_scan, cost_measurements
from e2eebench.evaluation.run.runner import RunConfig, prepare, run_scheme
from e2eebench.evaluation.data.workload import WorkloadConfig

NAMES = sorted(SCHEMES)


@pytest.fixture(scope="module")
def small_data():
    cfg = RunConfig(corpus="dead-leaves", image_size=128, n_known=8, n_benign=24, seed=7,
                    workload=WorkloadConfig(n_accounts=8, offender_fraction=0.25, days=3,
                                            messages_per_account_per_day=2.0, image_fraction=0.9),
                    profile="conformance")
    return prepare(cfg)


@pytest.fixture(scope="module")
def runs(small_data):
    return {}


def _run(name, small_data, runs):
    if name not in runs:
        runs[name] = run_scheme(name, small_data)
    return runs[name]


def _ctx(mid="probe", account="acct-0000", seed=1):
    ch = Channel(Ledger())
    if _ENDPOINT[0] is not None:
        _ENDPOINT[0](ch)
    return MessageContext(mid, account, ch, PartyClock(), np.random.default_rng(seed))


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    cls = SCHEMES[name]
    assert cls.family in FAMILIES and cls.eu_category in EU_CATEGORIES
    assert cls.verdict_to and cls.trust and cls.description
    assert issubclass(cls, Scheme)


@pytest.mark.parametrize("name", NAMES)
def test_every_message_delivered_bit_exact(name, small_data, runs):
    run = _run(name, small_data, runs)
    sent = [o for o in run.outcomes if o.sent]
    assert sent, "no message was sent"
    assert all(o.delivered_ok for o in sent)
    expected = len(small_data.workload.messages) if run.sampled is None else run.sampled[0]
    assert len(run.outcomes) == expected


def _verdict_mismatches(run, small_data):
    """Per image by ``Scheme.reference_verdict``; for a scheme with an account threshold by its
    account rule (``Scheme.account_verdicts``), which it must then declare."""
    scheme = run.scheme
    im = [o for o in run.outcomes if o.has_image]
    synthetic = {x.message_id for x in run.ledger.learned_by(DEVICE, "synthetic_sent")}
    by_account = scheme.account_verdicts(
        small_data.db, [(o.message_id, o.account, small_data.images[o.message_id], o.message_id not in synthetic)
                        for o in im])
    assert (by_account is not None) == ("t" in scheme.p), f"{scheme.name}: a threshold scheme must declare account_verdicts"
    out = []
    for o in im:
        expect = (by_account[o.message_id] if by_account is not None else
                  scheme.reference_verdict(small_data.db, small_data.images[o.message_id], run.ledger, o.message_id))
        if o.detected != expect:
            out.append((o.message_id, o.transform, expect, o.detected))
    return out


# schemes whose detection waits on a person's report: the protocol is checked with every known
# image reported (so the case is not trivial), and at the default rate against the recorded decisions
USER_REPORT_NAMES = [n for n in NAMES if "report_rate" in {p.name for p in SCHEMES[n].params}]
THRESHOLD_NAMES = [n for n in NAMES if "t" in {p.name for p in SCHEMES[n].params}]
THRESHOLD_CASE = {"t": 2}  # small enough that some account of the small case reaches it


@pytest.mark.parametrize("name", NAMES)
def test_verdicts_equal_plaintext_matching(name, small_data, runs):
    """Per image for most schemes; for a scheme with an account threshold, by its account rule
    (``Scheme.account_verdicts``), which it must declare."""
    threshold = name in THRESHOLD_NAMES
    run = run_scheme(name, small_data, params=THRESHOLD_CASE) if threshold else _run(name, small_data, runs)
    scheme = run.scheme
    own_rule = (type(scheme).plaintext_match is not Scheme.plaintext_match
                or type(scheme).plaintext_verdict is not Scheme.plaintext_verdict)
    if scheme.matching == "none":  # a control row: it must detect nothing, and nobody learns a verdict
        assert not any(o.detected for o in run.outcomes)
        assert not [x for x in run.ledger.learned if x.kind == "verdict"]
        assert not any(scheme.plaintext_verdict(small_data.db, small_data.images[o.message_id])
                       for o in run.outcomes if o.has_image)
        return
    if scheme.matching in ("chunked", "approximate") and not own_rule:
        pytest.skip(f"{name} claims {scheme.matching} matching without a plaintext rule")
    if name in USER_REPORT_NAMES:
        run = run_scheme(name, small_data, params={"report_rate": 1.0})
    mismatches = _verdict_mismatches(run, small_data)
    assert not mismatches, mismatches
    # the case must not be trivial: some positives and some negatives
    verdicts = [o.detected for o in run.outcomes if o.has_image]
    assert any(verdicts) and not all(verdicts)


@pytest.mark.parametrize("name", USER_REPORT_NAMES)
def test_user_report_verdicts_follow_the_recorded_decisions(name, small_data, runs):
    """At the default report rate: detected exactly when the list matches and the recipient reported."""
    run = _run(name, small_data, runs)
    assert not _verdict_mismatches(run, small_data)
    decisions = run.ledger.learned_by(RECIPIENT, "report-decision")
    assert len(decisions) == sum(o.has_image and o.sent for o in run.outcomes)


@pytest.mark.parametrize("name", THRESHOLD_NAMES)
def test_threshold_schemes_reveal_only_matches(name, small_data, runs):
    """A scheme with an account threshold may reveal fewer matches, never a non-match."""
    run = run_scheme(name, small_data, params={"t": 1})  # the small case has few matches per account
    scheme = run.scheme
    for o in run.outcomes:
        if o.has_image and o.detected:
            h = small_data.hasher.hash(small_data.images[o.message_id])
            assert scheme.plaintext_match(small_data.db, h), f"{name} revealed non-matching {o.message_id}"
    assert any(o.detected for o in run.outcomes), "no account reached the threshold: the case is trivial"


@pytest.mark.parametrize("name", NAMES)
def test_only_bytes_cross_and_costs_recorded(name, small_data, runs):
    run = _run(name, small_data, runs)
    assert run.channel.transfers
    got = {t.seq: d for items in run.ledger.received.values() for t, d in items}
    for party, items in run.ledger.received.items():
        assert all(isinstance(d, bytes) for _, d in items)
    for t in run.channel.transfers:  # every transfer reached its receiver, and its size is those bytes
        assert t.seq in got and t.size == len(got[t.seq]), (t.label, t.size)
    assert len(got) == len(run.channel.transfers)
    assert sum(t.size for t in run.channel.transfers) > 0
    im = [o for o in run.outcomes if o.has_image and o.sent]
    assert all(o.bytes_up > 0 for o in im)
    assert sum(o.device_s + o.server_s for o in im) > 0


@pytest.mark.parametrize("name", NAMES)
def test_every_party_that_computes_or_receives_is_accounted(name, small_data, runs):
    """The parties are derived from what happened (the channel's transfers, the clocks), not from
    a list: a party that spent CPU or received bytes and has no cost row fails here."""
    run = _run(name, small_data, runs)
    rows = cost_measurements(run, {})
    def named(metrics, key):
        return {m.params[key] for m in rows if m.metric in metrics}
    computed = {p for p, t in run.cpu_s.items() if t > 0}
    accounted_cpu = named(("cpu_ms", "setup_cpu_s", "finalize_cpu_s"), "party")
    # the bundle's receipt and load on every device are accounted by device storage and device setup
    accounted_cpu |= {DEVICE} if any(m.metric == "device_setup_s" and m.n for m in rows) else set()
    assert computed <= accounted_cpu, f"CPU of {computed - accounted_cpu} is not accounted"
    # bundle downloads (device storage), prekey registration and session setup (messaging, the
    # same for every scheme) are outside the per-message and setup accounts
    once = ("bundle:", "prekeys:", "session:")
    received = {t.receiver for t in run.channel.transfers if not (t.message_id or "").startswith(once)}
    accounted_rx = named(("leg_bytes", "setup_leg_bytes"), "receiver")
    assert received <= accounted_rx, f"bytes received by {received - accounted_rx} are not accounted"
    sent = {t.sender for t in run.channel.transfers if not (t.message_id or "").startswith(once)}
    assert sent <= named(("leg_bytes", "setup_leg_bytes"), "sender")
    # every party the scheme declares besides the devices computes or receives something
    assert set(run.scheme.parties) - {DEVICE} <= computed | received
    im = [o for o in run.outcomes if o.has_image]
    for o in im:  # server_ms is the sum over every non-device party, per message
        assert o.server_s == pytest.approx(sum(v for k, v in o.party_s.items() if k in SERVER_PARTIES), abs=1e-12)
    for o in im:  # and the legs add up to what the devices sent
        assert o.bytes_up == sum(v for k, v in o.leg_bytes.items()
                                 if k.split("->")[0] in (DEVICE, RECIPIENT))


@pytest.mark.parametrize("name", NAMES)
def test_no_undeclared_plaintext_in_provider_view(name, small_data, runs):
    run = _run(name, small_data, runs)
    learned = run.ledger.learned_by(PROVIDER)
    kinds = {x.kind for x in learned}
    allowed = declared_leaks(SCHEMES[name].leakage, PROVIDER)
    scan = canary_scan(run, small_data)
    if "image" not in allowed:
        assert scan["image_hits"] == 0
    if "hash" not in allowed:
        assert scan["hash_hits"] == 0
    # the same check on the raw bytes the provider received, independent of any declaration:
    # an undeclared benign hash (raw or hex) or image fragment must not be in them
    raw = b"".join(run.ledger.received_bytes(PROVIDER))
    assert raw, "the provider received nothing"
    ran = {o.message_id for o in run.outcomes if o.has_image}
    benign = [m for m in small_data.workload.image_messages if not m.known and m.id in ran]
    assert benign, "no benign image ran: the check is empty"
    for m in benign:
        h = small_data.image_hash(m.id).tobytes()
        if "hash" not in kinds and "image" not in kinds:
            assert h not in raw and h.hex().encode() not in raw, m.id
        png = small_data.png[m.id]
        if "image" not in kinds:
            assert png[len(png) // 2: len(png) // 2 + 48] not in raw, m.id
    if "hash" in kinds:  # a declaration must be true: each declared hash is the hash of an image sent
        declared = {bytes(x.value) for x in learned if x.kind == "hash" and isinstance(x.value, (bytes, bytearray))}
        declared |= {np.asarray(x.value, np.uint8).tobytes() for x in learned
                     if x.kind == "hash" and isinstance(x.value, np.ndarray)}
        sent = {small_data.image_hash(m.id).tobytes() for m in small_data.workload.image_messages if m.id in ran}
        assert declared and declared <= sent, name


@pytest.mark.parametrize("name", NAMES)
def test_measured_leakage_within_declaration(name, small_data, runs):
    """Each probe's measured leakage, per party and link observer, does not exceed the scheme's
    declared leakage function (an interval lying wholly above zero for an undeclared quantity)."""
    run = _run(name, small_data, runs)
    ms = adversary_probes(run, small_data)
    probed = [m for m in ms if m.metric in PROBE_QUANTITY and m.label == "measured" and m.value is not None]
    assert any(m.params["party"] == "recipient" for m in probed)  # the probes ran on real views
    over = [(m.metric, m.params["party"], m.value, m.ci_low) for m in probed if exceeds_declaration(m, SCHEMES[name])]
    assert not over, over


def _setup(name, small_data):
    scheme = SCHEMES[name](small_data.hasher)
    ctx = _ctx("setup", PROVIDER)
    pstate, bundle = scheme.provider_setup(small_data.db, ctx)
    _ENDPOINT[0] = lambda channel: scheme.connect(channel, pstate, lambda account: None)
    dstate = scheme.device_load(bytes(bundle), "acct-0000", _ctx("bundle"))
    return scheme, pstate, bundle, dstate


_ENDPOINT: list = [None]  # the provider endpoint of the scheme set up last


def _garblings(payload: bytes, rng) -> list[bytes]:
    out = [payload[: len(payload) // 2], payload + b"\x00junk", rng.bytes(len(payload))]
    flipped = bytearray(payload)
    flipped[len(flipped) // 3] ^= 0x40
    out.append(bytes(flipped))
    flipped2 = bytearray(payload)
    flipped2[-1] ^= 0x01
    out.append(bytes(flipped2))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_malformed_payloads_rejected_with_typed_errors(name, small_data):
    scheme, pstate, bundle, dstate = _setup(name, small_data)
    known_img = small_data.known[0].image
    body = MessageBody("probe", b"\x89PNG not really").encode()
    prepared = scheme.device_prepare(dstate, known_img, _ctx("m-probe"))
    payload = scheme.device_seal(dstate, body, prepared, _ctx("m-probe"))[0]  # what rides in the envelope
    if not payload:
        payload = scheme.device_prepare(dstate, small_data.benign[0].image, _ctx("m-probe")).payload
    rng = np.random.default_rng(3)
    candidates = _garblings(payload, rng) if payload else [rng.bytes(64), b"\x01"]
    for bad in candidates:
        if bad == payload:
            continue
        ctx = _ctx("m-probe")
        try:
            scheme.provider_receive(pstate, bad, ctx)
        except E2EEBenchError:
            continue
        except Exception as e:  # the failure message is the point
            pytest.fail(f"{name}: garbled payload raised untyped {type(e).__name__}: {e}")
        # accepted without an error: then it must not count as a detection or a report
        learned = ctx.ledger.learned_by(PROVIDER)
        assert not any(x.kind == "verdict" and x.value for x in learned), f"{name} accepted a garbled payload as a match"
        assert not any(x.kind == "report" for x in learned), f"{name} accepted a garbled report"


@pytest.mark.parametrize("name", NAMES)
def test_malformed_bundle_rejected(name, small_data):
    scheme, pstate, bundle, dstate = _setup(name, small_data)
    if not bundle:
        with pytest.raises(ProtocolError):
            scheme.device_load(b"garbage", "acct-0000", _ctx("bundle"))
        return
    for bad in (bundle[:-7], bundle[:10], b"XXXX" + bundle[4:]):
        with pytest.raises(ProtocolError):
            scheme.device_load(bad, "acct-0000", _ctx("bundle"))
