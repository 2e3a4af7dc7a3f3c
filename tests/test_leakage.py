"""Leakage probes: inversion beats the no-information baseline; probes read the real views."""
from __future__ import annotations

import numpy as np
import pytest

from e2eebench.clientside.hashing import get_hasher
from e2eebench.evaluation.leakage import inversion as inv
from e2eebench.evaluation.data.corpora import get_corpus
from e2eebench.evaluation.run.runner import RunConfig, prepare, run_scheme
from e2eebench.evaluation.data.workload import WorkloadConfig
from e2eebench.protocols.errors import ConfigError

PDQ = get_hasher("pdq")


@pytest.fixture(scope="module")
def held_out():
    """Images the attacker never trained on (another dead-leaves seed, another size)."""
    items = get_corpus("dead-leaves", seed=424242, size=128).items(40)
    thumbs = np.stack([inv.thumbnail(it.image) for it in items])
    hs = np.stack([PDQ.hash(it.image) for it in items])
    fs = np.stack([PDQ.features(it.image).astype(np.float16).astype(np.float64) for it in items])
    return thumbs, hs, fs


@pytest.fixture(scope="module")
def models():
    return {k: inv.fit(k, PDQ, n_dead_leaves=250, with_bundled=False) for k in inv.KINDS}


def test_inversion_beats_mean_image_baseline(held_out, models):
    thumbs, hs, fs = held_out
    for kind, m in models.items():
        assert m.n_train == 250
        s = inv.score(m.reconstruct(hashes=hs, features=fs), thumbs, m.mean_thumb)
        assert s.ssim[1] > s.baseline_ssim[2], (kind, s)   # intervals do not overlap
        assert s.psnr[0] > s.baseline_psnr[0], (kind, s)


def test_intermediate_leaks_more_than_the_hash(held_out, models):
    thumbs, hs, fs = held_out
    sh = inv.score(models["hash"].reconstruct(hashes=hs), thumbs, models["hash"].mean_thumb)
    si = inv.score(models["intermediate"].reconstruct(features=fs), thumbs, models["intermediate"].mean_thumb)
    assert si.ssim[1] > sh.ssim[2]


def test_shuffled_inputs_do_not_beat_the_model(held_out, models):
    """The attack uses the pairing of input and image: shuffled hashes reconstruct worse."""
    thumbs, hs, _ = held_out
    m = models["hash"]
    good = inv.score(m.reconstruct(hashes=hs), thumbs, m.mean_thumb).ssim[0]
    bad = inv.score(m.reconstruct(hashes=hs[::-1]), thumbs, m.mean_thumb).ssim[0]
    assert good > bad


def test_unknown_view_kind_is_config_error():
    with pytest.raises(ConfigError):
        inv.fit("pixels")


@pytest.fixture(scope="module")
def small_data():
    cfg = RunConfig(image_size=96, n_known=8, n_benign=10, seed=3,
                    workload=WorkloadConfig(n_accounts=6, days=4, offender_fraction=0.34))
    return prepare(cfg)


def test_probes_read_the_provider_view(small_data):
    from e2eebench.evaluation.leakage.adversary import adversary_probes
    from e2eebench.evaluation.leakage.probes import db_exposure, membership_oracle
    hu = run_scheme("hash-upload", small_data)
    bl = run_scheme("on-device-bloom", small_data)
    ol = run_scheme("on-device-list", small_data)

    by = lambda ms: {m.metric: m for m in ms}  # noqa: E731

    def link(run):
        return next(m for m in adversary_probes(run, small_data) if m.metric == "linkability_advantage"
                    and m.params["party"] == "provider" and m.params["pairs"] == "any")
    lh, lb = link(hu), link(bl)
    assert lh.n > 0 and lh.ci_low > 0          # the provider holds every hash: repeats link
    assert lb.n == lh.n and lb.value == 0.0    # a fixed-size sealed cover links nothing

    assert by(membership_oracle(hu, small_data))["membership_oracle"].value == 0.0
    orc = by(membership_oracle(bl, small_data))["membership_oracle"]
    assert orc.value > 0 and orc.text.startswith("offline")

    n = len(small_data.db)
    assert by(db_exposure(hu, small_data))["db_exposure_bits"].value == 0.0
    assert by(db_exposure(ol, small_data))["db_exposure_bits"].value == n * 256
    bloom_bits = by(db_exposure(bl, small_data))["db_exposure_bits"].value
    assert bloom_bits == pytest.approx(n * np.log2(1 / bl.scheme.p["fpr"]))


@pytest.mark.slow
def test_inversion_probe_on_a_run(small_data):
    from e2eebench.evaluation.leakage.probes import inversion
    for name in ("hash-upload", "partial-hash"):
        ms = {m.metric: m for m in inversion(run_scheme(name, small_data), small_data)}
        assert ms["inversion_ssim"].value > ms["inversion_ssim_baseline"].value
    ms = {m.metric: m for m in inversion(run_scheme("on-device-bloom", small_data), small_data)}
    assert ms["inversion_ssim"].value is None and ms["inversion_ssim"].text == "no hash in provider view"


def test_membership_oracle_reads_the_device_view_not_the_ledger(small_data):
    """The oracle is a replay on the bundle the device received: wiping the ledger's verdicts
    changes nothing; on-device matching is an offline oracle, psi-ad's vouchers are not, and
    client PSI needs the provider for each test."""
    from e2eebench.evaluation.leakage.probes import membership_oracle, oracle_replay
    got = {}
    for name in ("on-device-list", "psi-ad", "psi-client-learns"):
        run = run_scheme(name, small_data)
        run.ledger.learned.clear()
        got[name] = (oracle_replay(run, small_data), membership_oracle(run, small_data)[0])
    (kind, tp, npos, fp, nneg), m = got["on-device-list"]
    assert kind == "offline" and tp == npos > 0 and fp == 0 < nneg and m.value > 0, m
    (kind, tp, npos, fp, nneg), m = got["psi-ad"]
    assert kind == "offline" and tp == npos and fp == nneg and m.value == 0.0, m
    assert got["psi-client-learns"][0][0] == "online" and got["psi-client-learns"][1].value == 0.0


def test_mlp_attacker_beats_the_baseline_and_is_seeded(held_out):
    thumbs, hs, _ = held_out
    m = inv.fit("hash", PDQ, n_dead_leaves=250, with_bundled=False, attacker="mlp")
    s = inv.score(m.reconstruct(hashes=hs), thumbs, m.mean_thumb)
    assert m.attacker == "mlp" and s.ssim[1] > s.baseline_ssim[2], s
    again = inv.fit("hash", PDQ, n_dead_leaves=250, with_bundled=False, attacker="mlp")
    assert np.array_equal(again.reconstruct(hashes=hs), m.reconstruct(hashes=hs))
    with pytest.raises(ConfigError):
        inv.fit("hash", PDQ, attacker="forest")


def test_training_excludes_every_tile_of_an_evaluated_photo():
    ts = inv.training_set("pdq", 20)
    groups = [g for g in ts.groups if sum(x == g for x in ts.groups) > 1]
    assert groups, "no photo with tiles in the attacker's corpus: the check is empty"
    g = groups[0]
    m = inv.fit("hash", PDQ, exclude=frozenset({g}), n_dead_leaves=20)
    assert m.n_train == len(ts.ids) - sum(x == g for x in ts.groups)
