"""Run metrics count what the run did: sampled runs, slices, labels."""
from __future__ import annotations

import pytest

from e2eebench.evaluation.api import MEASUREMENTS
from e2eebench.evaluation.run.metrics import canary_scan, leakage_measurements
from e2eebench.evaluation.run.runner import RunConfig, prepare, run_scheme
from e2eebench.evaluation.data.workload import WorkloadConfig
from e2eebench.protocols.registry import scheme_class


@pytest.fixture(scope="module")
def small_data():
    cfg = RunConfig(image_size=96, n_known=8, n_benign=10, seed=3, profile="quick",
                    workload=WorkloadConfig(n_accounts=6, days=4, offender_fraction=0.34))
    return prepare(cfg)


def test_sampled_run_leakage_counts_only_messages_run(small_data, monkeypatch):
    """A sampled run (as the HE schemes are in the quick profile) must not average its
    provider-view figures over benign messages it never sent."""
    monkeypatch.setattr(scheme_class("server-side"), "quick_sample", 6)
    run = run_scheme("server-side", small_data)
    assert run.sampled is not None and run.sampled[0] < run.sampled[1]
    benign_run = [o for o in run.outcomes if o.has_image and not o.known]
    assert 0 < len(benign_run) < sum(1 for m in small_data.workload.image_messages if not m.known)

    scan = canary_scan(run, small_data)
    # the provider sees every image it relays in the clear: all of them, and only those, are hits
    assert scan["images"] == len(benign_run) and scan["image_hits"] == len(benign_run)

    from e2eebench.evaluation.leakage.probes import leakage_probes
    ms = {m.metric: m for m in leakage_probes(run, small_data)}
    bits = ms["provider_learns_per_benign_bits"]  # an estimate from the probes, per distinct image
    ids = {o.message_id for o in benign_run}
    assert bits.n == len({m.item_id for m in small_data.workload.image_messages if m.id in ids})
    # independent figure: the provider learns at least the PNG it relays for every benign message
    min_bits = min(8 * len(small_data.png[o.message_id]) for o in benign_run)
    assert bits.value >= min_bits
    assert "provider_learns_per_benign_bits" not in {m.metric for m in leakage_measurements(run, small_data, {})}


def test_modelled_scheme_keeps_declared_labels(small_data):
    """The enclave's measurements become "modelled"; its declared metadata stays "declared"."""
    from e2eebench.evaluation.run.metrics import measure
    run = run_scheme("enclave", small_data)
    assert run.scheme.modelled
    ms = measure(run, small_data, MEASUREMENTS)
    labels = {m.metric: m.label for m in ms}
    assert labels["verdict_to"] == "declared"
    assert labels["recall"] == "modelled" and labels["bytes_up"] == "modelled"
    assert "measured" not in {m.label for m in ms}


def test_membership_oracle_rate_has_interval_and_its_own_n(small_data):
    """tests/s = 1 / mean device CPU per offline verdict; n is the timings used, the interval
    brackets the value."""
    from e2eebench.evaluation.leakage.probes import membership_oracle
    run = run_scheme("on-device-bloom", small_data)
    m = membership_oracle(run, small_data)[0]
    times = [o.device_s for o in run.outcomes if o.has_image and o.device_s > 0]
    assert m.n == len(times)
    assert m.value == pytest.approx(1.0 / (sum(times) / len(times)))
    assert m.ci_low is not None and m.ci_low <= m.value <= m.ci_high


def test_sampled_precision_says_its_base_rate_is_the_samples(small_data, monkeypatch):
    from e2eebench.evaluation.run.metrics import measure
    monkeypatch.setattr(scheme_class("server-side"), "quick_sample", 6)
    run = run_scheme("server-side", small_data)
    prec = [m for m in measure(run, small_data, ()) if m.metric == "precision"
            and m.params.get("slice") == "workload base rate"][0]
    im = [o for o in run.outcomes if o.has_image]
    assert prec.params["base_rate"] == round(sum(o.known for o in im) / len(im), 4)
    assert prec.value is not None and "sample's base rate" in prec.text


def test_slow_scheme_outside_quick_checks_its_sample_against_the_rule(small_data, monkeypatch):
    """Outside the quick profile a slow scheme runs a stratified sample (every near-threshold
    image included), must agree with its plaintext rule there, and reports effectiveness from the
    rule over every message."""
    from dataclasses import replace
    import e2eebench.evaluation.run.runner as runner
    from e2eebench.evaluation.run.metrics import measure
    monkeypatch.setattr(scheme_class("server-side"), "quick_sample", 6)
    monkeypatch.setattr(runner, "RULE_SAMPLE", 8)
    data = replace(small_data, config=replace(small_data.config, profile="standard"))
    run = run_scheme("server-side", data)
    assert run.rule_outcomes is not None and run.sampled[0] < run.sampled[1]
    near = {mid for mid, d in runner.nearest_distances(data).items() if abs(d - data.threshold) <= runner.NEAR_BAND}
    assert near <= {o.message_id for o in run.outcomes}
    ms = measure(run, data, ())
    eq = [m for m in ms if m.metric == "verdict_equals_plaintext_rule"][0]
    assert eq.value == 1.0 and eq.n == run.sampled[0]
    rec = [m for m in ms if m.metric == "recall" and m.params.get("slice") == "all"][0]
    assert rec.n == len({m.item_id for m in data.workload.image_messages if m.known})
    assert "plaintext rule" in rec.text
