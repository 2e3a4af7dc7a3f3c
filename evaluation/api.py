"""The Python API the notebooks use: the same objects the CLI uses.

It is also where the harness's stages meet: a comparison is prepared and run by ``run``, with
the threshold calibration of ``accuracy`` handed in, and measured with the functions of the
measurement stages (``leakage``, ``accuracy``, ``attacks``, ``bench``) handed to the metrics.

>>> from e2eebench.evaluation.api import quick_config, run
>>> result = run(quick_config(schemes=["server-side", "on-device-list"]), db=":memory:")
>>> result.summary()          # one row per scheme
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd

from e2eebench.evaluation.accuracy.robustness import calibrated_threshold, run_pair_metrics
from e2eebench.evaluation.attacks.profile import run_security_metrics
from e2eebench.evaluation.bench.eu_scale import eu_scale_rows
from e2eebench.evaluation.leakage.probes import leakage_probes
from e2eebench.evaluation.run.config import builtin_config, check_config, load_config
from e2eebench.evaluation.run.metrics import MeasureFn, measure
from e2eebench.evaluation.run.runner import RunConfig, RunData, SchemeRun, prepare, run_comparison
from e2eebench.evaluation.run.store import Measurement, ResultStore

# what every run measures beyond the metrics of its own stage, in the order they are stored; the
# EU-scale rows come last, from all schemes' measurements (they subtract the control row's cost)
MEASUREMENTS: tuple[MeasureFn, ...] = (leakage_probes, run_pair_metrics, run_security_metrics)


@dataclass
class RunResult:
    run_id: str
    config: RunConfig
    data: RunData
    runs: list[SchemeRun]
    measurements: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        from e2eebench.evaluation.run.output import summary_wide
        return summary_wide(self.measurements)

    def metric(self, scheme: str, metric: str, **slice_) -> float | None:
        import json
        d = self.measurements
        d = d[(d.scheme == scheme) & (d.metric == metric)]
        for _, r in d.iterrows():
            p = json.loads(r["params"])
            if all(p.get(k) == v for k, v in slice_.items()) and (slice_ or p.get("slice", "all") == "all"):
                return None if pd.isna(r["value"]) else float(r["value"])
        raise KeyError(f"no {metric} for {scheme}")


def quick_config(**overrides) -> RunConfig:
    from e2eebench.protocols.registry import SCHEMES
    cfg = load_config(builtin_config("quick"))
    if not cfg.schemes:
        cfg.schemes = list(SCHEMES)
    return replace(cfg, **overrides)


_PREPARED: dict[str, RunData] = {}   # the last shared work, reused while only the scheme changes


def measure_config(config: RunConfig) -> list[Measurement]:
    """Run and measure every scheme of ``config`` without storing anything: a sweep cell's work
    (the sweep's driver stores it). Consecutive cells that differ only in their scheme (in one
    process or on one worker) share the prepared work, which is deterministic by seed."""
    check_config(config, "cell")
    key = json.dumps(replace(config, schemes=[], scheme_params={}).to_dict(), sort_keys=True, default=str)
    data = _PREPARED.get(key)
    if data is None:
        _PREPARED.clear()
        data = _PREPARED[key] = prepare(config, threshold_source=calibrated_threshold)
    data = replace(data, config=config)
    from e2eebench.evaluation.run.scheduling import run_schemes
    if not config.schemes:
        from e2eebench.protocols.errors import ConfigError
        raise ConfigError("no schemes selected")
    return run_schemes(data, config.schemes, MEASUREMENTS, keep_runs=False)[1]


def run(config: RunConfig, db: str = "e2eebench.duckdb",
        progress: Callable[[str, int, int], None] | None = None, command: str = "run",
        scheduler: str | None = None, keep_runs: bool = True) -> RunResult:
    """Run the comparison, measure it, store it (one transaction) and return everything.

    ``scheduler``: a Dask scheduler address (or "local" for a 2-process local cluster) to run
    the schemes as cluster tasks, or "processes" for two forked workers on this machine (the
    standard profile's default); ``runs`` is then empty (the party views stay on the workers).
    ``keep_runs=False``: ``runs`` is empty in process too, and each scheme's run is freed once
    measured (peak memory: one scheme's, not every scheme's).
    Bad input (a config value, a missing folder for ``db``) is refused before any work starts.
    """
    check_config(config, "run config")
    ResultStore.check_path(db)
    if scheduler is None and config.profile == "standard":
        scheduler = "processes"   # both cores: two forked workers sharing the prepared work
    from e2eebench.evaluation.run.scheduling import run_schemes
    from e2eebench.protocols.registry import scheme_class
    if not config.schemes:
        from e2eebench.protocols.errors import ConfigError
        raise ConfigError("no schemes selected")
    for n in config.schemes:
        scheme_class(n)
    data = prepare(config, progress, threshold_source=calibrated_threshold)
    runs, ms = run_schemes(data, config.schemes, MEASUREMENTS, scheduler, progress, keep_runs=keep_runs)
    ms = list(ms) + eu_scale_rows(ms)
    with ResultStore(db) as store:
        run_id = store.write_run(ms, command=command, config=data.config.to_dict(), seed=config.seed)
        df = store.measurements(run_id)
    return RunResult(run_id, data.config, data, runs, df)
