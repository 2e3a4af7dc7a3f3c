"""The same comparison on a Dask cluster gives the same (untimed) measurements as in-process."""
from __future__ import annotations

import pytest

from e2eebench.evaluation.run.runner import RunConfig, prepare
from e2eebench.evaluation.api import MEASUREMENTS
from e2eebench.evaluation.run.scheduling import run_schemes
from e2eebench.evaluation.data.workload import WorkloadConfig
from e2eebench.protocols.errors import InputError


@pytest.fixture(scope="module")
def data():
    cfg = RunConfig(image_size=128, n_known=6, n_benign=12, seed=3, profile="conformance",
                    workload=WorkloadConfig(n_accounts=6, days=2, messages_per_account_per_day=2.0,
                                            offender_fraction=0.34))
    return prepare(cfg)


def _untimed(ms):
    return sorted((m.scheme, m.metric, str(sorted(m.params.items())), m.value, m.n)
                  for m in ms if m.unit not in ("ms", "s", "cores", "CPU hours") and "/s" not in m.unit)


def test_cluster_equals_in_process(data):
    distributed = pytest.importorskip("distributed")
    names = ["server-side", "psi-ad"]
    _, local = run_schemes(data, names, MEASUREMENTS)
    # a worker process: the shared work and the measurement functions are pickled, as on a cluster
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        runs, remote = run_schemes(data, names, MEASUREMENTS, scheduler=cluster.scheduler_address)
    assert runs == []
    assert _untimed(remote) == _untimed(local)


def test_unreachable_scheduler_is_a_clear_error(data):
    pytest.importorskip("distributed")
    with pytest.raises(InputError):
        run_schemes(data, ["server-side"], MEASUREMENTS, scheduler="tcp://127.0.0.1:9")
