"""Cost accounting: every party and leg, device round trips apart from server rounds, the list
padded to a list size, and the control rows' costs and views."""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.evaluation.data.workload import WorkloadConfig
from e2eebench.evaluation.run.config import config_from_dict
from e2eebench.evaluation.run.metrics import cost_measurements
from e2eebench.evaluation.run.runner import RunConfig, prepare, run_scheme
from e2eebench.protocols.channel import DEALER, DEVICE, ESCROW, PROVIDER, SECOND_SERVER
from e2eebench.protocols.errors import ConfigError
from e2eebench.server.database import KnownHashDatabase

WL = WorkloadConfig(n_accounts=6, offender_fraction=0.34, days=2, messages_per_account_per_day=2.0,
                    image_fraction=0.9)


def _cfg(**kw) -> RunConfig:
    return RunConfig(image_size=96, n_known=6, n_benign=12, seed=5, workload=WL, profile="conformance", **kw)


@pytest.fixture(scope="module")
def small():
    return prepare(_cfg())


def _rows(run, metric):
    return [m for m in cost_measurements(run, {}) if m.metric == metric]


# -- the list padded to a size ---------------------------------------------------------------
def test_padding_keeps_the_real_entries_and_labels_the_rest():
    rng = np.random.default_rng(0)
    db = KnownHashDatabase(["a", "b", "c"], {"pdq": rng.integers(0, 256, (3, 32), dtype=np.uint8)},
                           {"pdq": rng.normal(0, 100, (3, 256))})
    big = db.padded(100_000, seed=1)
    assert len(big) == 100_000 and big.synthetic == 99_997
    assert big.ids[:3] == db.ids and (big.hashes["pdq"][:3] == db.hashes["pdq"]).all()
    assert big.features["pdq"].shape == (100_000, 256) and big.features["pdq"].dtype == db.features["pdq"].dtype
    assert (db.padded(100_000, seed=1).hashes["pdq"] == big.hashes["pdq"]).all()      # seeded
    assert not (db.padded(100_000, seed=2).hashes["pdq"][3:] == big.hashes["pdq"][3:]).all()
    again = big.padded(100_010, seed=3)                  # padding a padded list keeps ids unique
    assert again.synthetic == 100_007 and len(set(again.ids)) == 100_010
    assert db.padded(2) is db


def test_list_size_pads_the_run_list(small):
    padded = prepare(_cfg(list_size=5_000))
    assert len(padded.db) == 5_000 and padded.db.synthetic == 5_000 - len(small.db)
    assert (padded.db.hashes_for("pdq")[:len(small.db)] == small.db.hashes_for("pdq")).all()
    with pytest.raises(ConfigError, match="below n_known"):
        prepare(_cfg(list_size=3))


def test_list_size_config_key():
    assert config_from_dict({"run": {"list_size": 1000}}).list_size == 1000
    assert config_from_dict({"run": {}}).list_size is None
    for bad in ("many", 0, True):
        with pytest.raises(ConfigError, match="list_size"):
            config_from_dict({"run": {"list_size": bad}})


def test_costs_are_measured_at_the_list_size_and_say_so(small):
    """At 10^5 entries the plain on-device list ships every hash: its bundle and storage grow with
    the list, the verdicts (synthetic hashes never match) and the labels say what was run."""
    big = prepare(_cfg(list_size=100_000))
    run_small, run_big = run_scheme("on-device-list", small), run_scheme("on-device-list", big)
    assert run_big.list_size == 100_000 and run_big.synthetic == 100_000 - len(small.db)
    assert run_big.bundle_bytes >= 100_000 * 32 > 100 * run_small.bundle_bytes
    (storage,) = _rows(run_big, "device_storage_bytes")
    assert storage.value >= 100_000 * 32
    assert storage.params["list_size"] == 100_000 and storage.params["synthetic_padding"] == run_big.synthetic
    assert [o.detected for o in run_big.outcomes] == [o.detected for o in run_small.outcomes]
    (load,) = _rows(run_big, "device_setup_s")
    assert load.n == len(big.workload.accounts)


def test_large_list_runs_a_labelled_sample(small):
    from e2eebench.protocols.mpc import TwoServerMPC
    entries, k = TwoServerMPC.list_sample
    run = run_scheme("two-server-mpc", prepare(_cfg(list_size=entries + 1)))
    assert run.sampled == (k, len(small.workload.image_messages))
    assert run_scheme("two-server-mpc", small).sampled is None


# -- every party, every leg ------------------------------------------------------------------
def test_mpc_counts_the_second_server_the_dealer_and_their_legs(small):
    run = run_scheme("two-server-mpc", small)
    cpu = {m.params["party"]: m.value for m in _rows(run, "cpu_ms")}
    legs = {m.params["leg"]: m.value for m in _rows(run, "leg_bytes")}
    assert cpu[SECOND_SERVER] > 0 and cpu[DEALER] > 0 and cpu[PROVIDER] > 0
    for leg in (f"{DEALER}->{PROVIDER}", f"{DEALER}->{SECOND_SERVER}", f"{PROVIDER}->{SECOND_SERVER}",
                f"{SECOND_SERVER}->{PROVIDER}", f"{DEVICE}->{SECOND_SERVER}"):
        assert legs[leg] > 0, leg
    (server_ms,) = _rows(run, "server_ms")
    assert server_ms.value == pytest.approx(cpu[PROVIDER] + cpu[SECOND_SERVER] + cpu[DEALER], rel=1e-9)
    im = [o for o in run.outcomes if o.has_image]
    # the device sends two shares and waits for nothing; the servers exchange many flights
    assert all(o.rounds == 1 for o in im) and all(o.server_rounds > 4 for o in im)
    (sb,) = _rows(run, "server_bytes")
    between = [k for k in legs if DEVICE not in k.split("->") and "recipient" not in k.split("->")]
    assert sb.value == pytest.approx(sum(legs[k] for k in between), rel=1e-9)


def test_enclave_cpu_is_in_server_ms(small):
    run = run_scheme("enclave", small)
    cpu = {m.params["party"]: m.value for m in _rows(run, "cpu_ms")}
    (server_ms,) = _rows(run, "server_ms")
    assert cpu["provider-enclave"] > 0
    assert server_ms.value == pytest.approx(cpu[PROVIDER] + cpu["provider-enclave"], rel=1e-9)
    assert {m.params["party"] for m in _rows(run, "setup_cpu_s")} >= {"provider-enclave"}


def test_a_device_that_waits_for_an_answer_has_two_round_trips(small):
    run = run_scheme("psi-client-learns", small)
    im = [o for o in run.outcomes if o.has_image]
    assert all(o.rounds == 2 and o.server_rounds == 0 for o in im)


# -- the control rows ------------------------------------------------------------------------
def test_no_detection_adds_nothing_and_nobody_learns_a_verdict(small):
    run = run_scheme("e2ee-no-detection", small)
    im = [o for o in run.outcomes if o.has_image]
    assert all(o.detection_bytes_up == 0 and o.detection_bytes_down == 0 for o in im)
    assert not any(o.detected for o in im) and not run.ledger.learned
    assert {t.receiver for t in run.channel.transfers} == {DEVICE, PROVIDER, "recipient"}
    assert run.bundle_bytes == 0


def test_escrow_reads_every_message_and_its_cost_is_counted(small):
    run = run_scheme("exceptional-access", small)
    read = {x.message_id: x.value for x in run.ledger.learned_by(ESCROW, "image")}
    images = [m for m in small.workload.image_messages]
    assert images and all(read[m.id] == small.png[m.id] for m in images)   # bit for bit
    texts = {x.message_id for x in run.ledger.learned_by(ESCROW, "text")}
    assert texts == {m.id for m in small.workload.messages if m.text}
    assert not any(x.kind == "verdict" for x in run.ledger.learned)
    assert not run.ledger.learned_by(PROVIDER)             # the provider only forwards sealed bytes
    cpu = {m.params["party"]: m.value for m in _rows(run, "cpu_ms")}
    legs = {m.params["leg"]: m.value for m in _rows(run, "leg_bytes")}
    assert cpu[ESCROW] > 0 and legs[f"{PROVIDER}->{ESCROW}"] > 0
    im = [o for o in run.outcomes if o.has_image]
    # the escrow copy is the body sealed again: about as many bytes as the message itself
    assert all(o.detection_bytes_up > len(small.png[o.message_id]) for o in im)


def test_verbatim_count_is_exact_and_vectorised():
    from e2eebench.evaluation.leakage.probes import count_verbatim
    rng = np.random.default_rng(4)
    hs = rng.integers(0, 256, (2_000, 32), dtype=np.uint8)
    blob = rng.bytes(50_000) + hs[5].tobytes() + b"x" + hs[7].tobytes().hex().encode() + hs[9].tobytes()[:-1]
    assert count_verbatim(hs, blob) == 2                 # raw, hex; a truncated copy does not count
    assert count_verbatim(hs, b"head" + b"".join(h.tobytes() for h in hs)) == len(hs)
    twin = hs[:2].copy()
    twin[1, :8] = twin[0, :8]                            # same 8-byte prefix, different hash
    assert count_verbatim(twin, twin[0].tobytes() + b"zz" + twin[1].tobytes()) == 2
    assert count_verbatim(twin, twin[0].tobytes()) == 1
