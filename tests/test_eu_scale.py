"""EU-scale extrapolation: measured per-image cost times an assumed volume, labelled modelled."""
from __future__ import annotations

import json

import pytest

from e2eebench.evaluation.bench.eu_scale import SECONDS_PER_DAY, images_per_day
from e2eebench.evaluation.run.store import ResultStore
from e2eebench.protocols.errors import ConfigError


def test_rows_follow_from_the_measured_cost(quick_db):
    with ResultStore(quick_db) as s:
        df = s.measurements(s.resolve("latest"))
    for scheme in df.scheme.unique():
        d = df[df.scheme == scheme]
        cores = d[d.metric == "eu_scale_provider_cores"].iloc[0]
        server = d[(d.metric == "server_ms")].iloc[0]
        volume = json.loads(cores["params"])["images_per_day"]
        assert cores["label"] == "modelled" and cores["unit"] == "cores"
        assert cores["value"] == pytest.approx(server["value"] / 1e3 * volume / SECONDS_PER_DAY, rel=1e-9)
        assert cores["n"] == server["n"]


def test_volume_from_the_environment(monkeypatch):
    monkeypatch.setenv("E2EEBENCH_IMAGES_PER_DAY", "2e8")
    assert images_per_day() == 2e8
    monkeypatch.setenv("E2EEBENCH_IMAGES_PER_DAY", "lots")
    with pytest.raises(ConfigError):
        images_per_day()
