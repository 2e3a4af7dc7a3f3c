"""EU-scale rows: measured per-image cost minus the no-detection control row, times an assumed
volume, at a stated deployed list size; labelled modelled, every input in the text."""
from __future__ import annotations

import json

import pytest

from e2eebench.evaluation.bench.eu_scale import (BASELINE, SECONDS_PER_DAY, deployed_list_size, eu_scale_rows,
                                                 images_per_day)
from e2eebench.evaluation.run.store import Measurement, ResultStore
from e2eebench.protocols.errors import ConfigError


def _row(d, metric):
    r = d[d.metric == metric]
    r = r[r.params.map(lambda p: "party" not in json.loads(p) and "slice" not in json.loads(p))]
    assert len(r) == 1, (metric, len(r))
    return r.iloc[0]


def test_rows_are_what_detection_adds_over_the_control_row(quick_db):
    with ResultStore(quick_db) as s:
        df = s.measurements(s.resolve("latest"))
    base = df[df.scheme == BASELINE]
    assert not len(base[base.metric == "eu_scale_provider_cores"])  # the baseline subtracts nothing from itself
    for scheme in ("server-side", "on-device-list", "psi-ad"):
        d = df[df.scheme == scheme]
        cores = _row(d, "eu_scale_provider_cores")
        p = json.loads(cores["params"])
        added = _row(d, "server_ms")["value"] - _row(base, "server_ms")["value"]
        assert cores["label"] == "modelled" and cores["unit"] == "cores"
        assert cores["value"] == pytest.approx(added / 1e3 * p["images_per_day"] / SECONDS_PER_DAY, rel=1e-9)
        up = _row(d, "eu_scale_detection_upload_tb_per_day")
        added_up = _row(d, "bytes_up")["value"] - _row(base, "bytes_up")["value"]
        assert up["value"] == pytest.approx(added_up * p["images_per_day"] / 1e12, rel=1e-9)
        # the quick list (40 entries) is below the deployed size: the rows say it is a lower bound
        assert p["cost_list_size"] == 40 and p["deployed_list_size"] == 1_000_000
        assert p["at_deployed_list_size"] is False and "LOWER BOUND" in cores["text"]
        for cited in ("measured, this run", BASELINE, "images per day", "REFERENCES.md"):
            assert cited in cores["text"]
    # psi-ad uploads a voucher the control row does not: what detection adds is positive
    assert _row(df[df.scheme == "psi-ad"], "eu_scale_detection_upload_tb_per_day")["value"] > 0


def _m(scheme, metric, value, lo, hi, list_size=1_000_000):
    return Measurement(scheme, metric, value, "ms", 10, lo, hi, {"list_size": list_size})


def test_at_the_deployed_size_and_without_a_baseline():
    rows = eu_scale_rows([_m("x", "server_ms", 5.0, 4.0, 6.0), _m(BASELINE, "server_ms", 1.0, 0.5, 1.5)])
    (r,) = rows
    f = images_per_day() * 1e-3 / SECONDS_PER_DAY
    assert r.value == pytest.approx(4.0 * f)
    half = (1.0 ** 2 + 0.5 ** 2) ** 0.5 * f          # intervals combined in quadrature
    assert (r.ci_low, r.ci_high) == (pytest.approx(4.0 * f - half), pytest.approx(4.0 * f + half))
    assert r.params["at_deployed_list_size"] is True and "at the deployed list size" in r.text
    (r,) = eu_scale_rows([_m("x", "server_ms", 5.0, 4.0, 6.0)])
    assert r.value is None and "no e2ee-no-detection row" in r.text


def test_inputs_from_the_environment(monkeypatch):
    monkeypatch.setenv("E2EEBENCH_IMAGES_PER_DAY", "2e8")
    monkeypatch.setenv("E2EEBENCH_DEPLOYED_LIST_SIZE", "100000")
    assert images_per_day() == 2e8 and deployed_list_size() == 100_000
    monkeypatch.setenv("E2EEBENCH_IMAGES_PER_DAY", "lots")
    with pytest.raises(ConfigError):
        images_per_day()
    monkeypatch.setenv("E2EEBENCH_DEPLOYED_LIST_SIZE", "-3")
    with pytest.raises(ConfigError):
        deployed_list_size()
