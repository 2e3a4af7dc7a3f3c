"""End to end: `e2eebench run --quick` rows, the same numbers in every format and in the store."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from e2eebench.evaluation.cli.app import main
from e2eebench.evaluation.run.output import SUMMARY_METRICS
from e2eebench.evaluation.run.store import ResultStore


def stored(db):
    with ResultStore(db) as s:
        rid = s.resolve("latest")
        return rid, s.measurements(rid), s.run_info(rid)


def overall(df, scheme, metric):
    d = df[(df.scheme == scheme) & (df.metric == metric)]
    d = d[d.params.map(lambda p: json.loads(p).get("slice", "all") == "all")]
    assert len(d) == 1, (scheme, metric, len(d))
    return d.iloc[0]


def test_one_row_per_scheme_with_every_metric(quick_db):
    rid, df, info = stored(quick_db)
    assert sorted(df.scheme.unique()) == ["e2ee-no-detection", "on-device-list", "psi-ad", "server-side"]
    for scheme in df.scheme.unique():
        for metric in SUMMARY_METRICS:
            overall(df, scheme, metric)
    assert info["seed"] == 0 and info["commit"] and info["versions"]["pdqhash"] != "absent"
    for metric in ("recall", "fpr"):
        r = overall(df, "on-device-list", metric)
        assert r["n"] > 0 and r["ci_low"] <= r["value"] <= r["ci_high"]


def test_json_gives_the_stored_numbers(quick_db, capsys):
    code = main(["run", "--quick", "--schemes", "server-side,e2ee-no-detection,on-device-list,psi-ad", "--db", str(quick_db),
                 "--format", "json"])
    from e2eebench.evaluation.run.strictjson import loads_strict
    out = loads_strict(capsys.readouterr().out)   # NaN / Infinity would raise here
    assert code == 0
    _, df, _ = stored(quick_db)      # the run just printed is now the latest
    assert out["run_id"] == stored(quick_db)[0]
    # complete: every stored row of the run, under its scheme and metric, with the stored numbers
    listed = [(row["scheme"], metric, json.dumps(m["params"], sort_keys=True), m)
              for row in out["schemes"] for metric, ms in row["measurements"].items() for m in ms]
    assert len(listed) == len(df) and {s for s, *_ in listed} == set(df["scheme"])
    by_key = {(r.scheme, r.metric, r.params): r for r in df.itertuples()}
    assert len(by_key) == len(df)
    for scheme, metric, params, m in listed:
        r = by_key[(scheme, metric, params)]
        for k in ("value", "ci_low", "ci_high"):
            assert (m[k] is None) == pd.isna(getattr(r, k)) and (m[k] is None or m[k] == getattr(r, k)), (metric, k)
        assert (m["n"], m["unit"], m["label"]) == (r.n, r.unit, r.label)
    assert len({metric for _, metric, _, _ in listed}) > len(SUMMARY_METRICS) + 10
    for row in out["schemes"]:
        for metric, cell in row.items():
            if metric in ("scheme", "measurements", "leakage", "list_size", "synthetic_padding"):
                continue
            if metric.endswith(("_by_party", "_by_leg")):  # one stored row per party / leg
                name, key = metric.rsplit("_by_", 1)
                d = df[(df.scheme == row["scheme"]) & (df.metric == name)]
                got = {json.loads(p)[key]: v for p, v in zip(d.params, d.value)}
                assert got == pytest.approx({k: c["value"] for k, c in cell.items()}, rel=1e-12)
                continue
            r = overall(df, row["scheme"], metric)
            if cell["value"] is None:
                assert pd.isna(r["value"])
            else:
                assert cell["value"] == pytest.approx(float(r["value"]), rel=1e-12)
            assert cell["n"] == int(r["n"])
        # per party: the probe figures (measured, with n and interval) and the declarations
        leak = row["leakage"]
        assert {"provider", "recipient", "observer:device-provider"} <= set(leak)
        for party, figures in leak.items():
            for key, cell in figures.items():
                metric = key.split(":")[0].split("@")[0]
                rows = df[(df.scheme == row["scheme"]) & (df.metric == metric)
                          & df.params.map(lambda p: json.loads(p).get("party") == party)]
                assert len(rows) >= 1 and cell["label"] in set(rows["label"])
                assert cell["label"] == ("declared" if metric.startswith("declared_") else cell["label"])
        v = leak["recipient"]["verdict_inference_advantage"]
        assert v["label"] == "measured" and v["n"] > 0
        if row["scheme"] == "e2ee-no-detection":   # no verdict exists: nothing to infer, no interval
            assert v["value"] is None or v["ci_low"] <= 0 <= v["ci_high"]
        else:
            assert v["ci_low"] <= 0 <= v["ci_high"]
        assert leak["provider"]["declared_verdict"]["label"] == "declared"


def test_deterministic_by_seed(quick_db, tmp_path):
    db2 = tmp_path / "again.duckdb"
    assert main(["run", "--quick", "--schemes", "server-side,e2ee-no-detection,on-device-list,psi-ad", "--db", str(db2),
                 "--format", "csv"]) == 0
    _, a, _ = stored(quick_db)
    _, b, _ = stored(db2)
    def untimed(d):  # times (ms, s, per second) are what was spent, the rest must repeat exactly
        return d[~(d.unit.isin(["ms", "s", "cores", "CPU hours"]) | d.unit.str.contains("/s"))]
    key = ["scheme", "metric", "params"]
    a = untimed(a).sort_values(key).reset_index(drop=True)
    b = untimed(b).sort_values(key).reset_index(drop=True)
    assert list(a.metric) == list(b.metric)
    pd.testing.assert_series_equal(a["value"], b["value"], check_names=False)


def test_baseline_sees_hashes_and_on_device_list_leaks_none(quick_db):
    _, df, _ = stored(quick_db)
    assert overall(df, "server-side", "hash_visible_to_provider")["value"] == 1.0
    assert overall(df, "server-side", "canary_benign_images_in_provider_view")["value"] > 0
    for scheme in ("on-device-list", "psi-ad"):
        assert overall(df, scheme, "hash_visible_to_provider")["value"] == 0.0
        assert overall(df, scheme, "canary_benign_images_in_provider_view")["value"] == 0
        assert overall(df, scheme, "canary_benign_hashes_in_provider_view")["value"] == 0
        assert overall(df, scheme, "delivered_bit_exact")["value"] == 1.0


def test_device_storage_is_the_serialized_bundle(quick_db):
    from e2eebench.evaluation.api import quick_config
    from e2eebench.evaluation.run.runner import prepare
    from e2eebench.protocols.channel import Channel, MessageContext, PartyClock
    from e2eebench.protocols.registry import scheme_class
    import numpy as np
    _, df, _ = stored(quick_db)
    data = prepare(quick_config(schemes=["on-device-list"]))
    scheme = scheme_class("on-device-list")(data.hasher)
    ctx = MessageContext("setup", "provider", Channel(), PartyClock(), np.random.default_rng(0))
    _, bundle = scheme.provider_setup(data.db, ctx)
    assert overall(df, "on-device-list", "device_storage_bytes")["value"] == len(bundle)


def test_export_after_run(quick_db, capsys, tmp_path):
    import io
    import pandas as pd
    out = tmp_path / "t.csv"
    assert main(["export", "--db", str(quick_db), "--run", "latest", "--format", "csv", "--out", str(out)]) == 0
    rid, df, _ = stored(quick_db)
    csv = pd.read_csv(io.StringIO(out.read_text()))
    assert set(csv["run_id"]) == {rid} and set(df["scheme"]) <= set(csv["scheme"])
    # every stored overall recall appears with its value, interval and n
    for scheme in set(df["scheme"]):
        st = overall(df, scheme, "recall")
        row = csv[(csv.scheme == scheme) & (csv.metric == "recall")].iloc[0]
        assert row["n"] == st["n"] and row["value"] == pytest.approx(st["value"])
        assert row["label"] == st["label"] and row["rating"] in ("green", "amber", "red", "grey")
    assert main(["export", "--db", str(tmp_path / "none.duckdb"), "--format", "md"]) == 2


def test_terminal_view_shows_every_scheme_and_both_groups(quick_db, capsys):
    from e2eebench.evaluation.run.output import TERMINAL_GROUPS, render_run_terminal
    _, df, _ = stored(quick_db)
    render_run_terminal(df, "title", order=["server-side", "psi-ad", "on-device-list"])
    out = capsys.readouterr().out
    for group, cols in TERMINAL_GROUPS:
        assert group in out
    assert out.index("server-side") < out.index("psi-ad") < out.index("on-device-list")
    rec = overall(df, "psi-ad", "recall")
    assert f"n={int(rec['n'])}" in out and f"{rec['value']:.3g}" in out


def test_calibrated_threshold_is_handed_to_the_runner():
    """The runner resolves 'calibrated' only through the source it is handed (no import of the
    accuracy stage): with a source it uses that source's answer, without one it refuses."""
    from e2eebench.evaluation.api import quick_config
    from e2eebench.evaluation.data.workload import WorkloadConfig
    from e2eebench.evaluation.run.runner import prepare, run_scheme
    from e2eebench.protocols.errors import ConfigError
    cfg = quick_config(schemes=["server-side"], n_known=4, n_benign=6, image_size=64, threshold="calibrated",
                       workload=WorkloadConfig(n_accounts=4, days=2))
    asked = []
    data = prepare(cfg, threshold_source=lambda hasher, seed: asked.append((hasher.name, seed)) or 17)
    assert asked == [("pdq", cfg.seed)] and data.threshold == 17
    assert run_scheme("server-side", data).scheme.threshold == 17
    with pytest.raises(ConfigError, match="calibrat"):
        prepare(cfg)
