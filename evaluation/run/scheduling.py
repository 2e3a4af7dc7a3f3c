"""Where the schemes run: in this process (default) or on a Dask cluster (``--scheduler``).

A user who outgrows one machine points the same command at a cluster: each scheme's run
over the shared work (the same corpus, list, traffic and rendered images) becomes one task;
the task runs the scheme and measures it on the worker, and only the measurements come
back. CPU times are still those actually spent by each party, on the worker that ran it.
"""
from __future__ import annotations

from typing import Callable, Sequence

from e2eebench.protocols.errors import ConfigError, InputError
from e2eebench.evaluation.data.processes import pool_usable
from e2eebench.evaluation.run.runner import RunData, SchemeRun, run_scheme
from e2eebench.evaluation.run.metrics import MeasureFn, measure
from e2eebench.evaluation.run.store import Measurement

Progress = Callable[[str, int, int], None]


def run_and_measure(name: str, data: RunData, extra: Sequence[MeasureFn]) -> list[Measurement]:
    """One scheme over the shared work, measured (the unit of work a cluster task runs)."""
    return measure(run_scheme(name, data), data, extra)


def _client(scheduler: str):
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - distributed is a declared dependency
        raise ConfigError("--scheduler needs the 'distributed' package") from None
    if scheduler == "local":
        return Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
    try:
        return Client(scheduler, timeout=5)
    except (OSError, TimeoutError, ValueError) as e:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler!r}: {e.__class__.__name__}") from None


def run_schemes(data: RunData, names: list[str], extra: Sequence[MeasureFn], scheduler: str | None = None,
                progress: Progress | None = None) -> tuple[list[SchemeRun], list[Measurement]]:
    """Run and measure every scheme (``extra``: the measurement stages' functions, as for
    :func:`measure`); with a scheduler the SchemeRun objects stay on the workers."""
    if scheduler is None:
        runs = [run_scheme(n, data, progress) for n in names]
        return runs, [m for r in runs for m in measure(r, data, extra)]
    if scheduler == "local" and not pool_usable("the schemes run"):
        return run_schemes(data, names, None, progress, extra)
    client = _client(scheduler)
    try:
        shared = client.scatter(data, broadcast=True)
        futures = client.map(run_and_measure, names, data=shared, extra=list(extra),
                             key=[f"e2eebench-{n}" for n in names])
        out: list[Measurement] = []
        for i, f in enumerate(futures):
            out.extend(f.result())
            if progress:
                progress("schemes (cluster)", i + 1, len(names))
        return [], out
    finally:
        client.close()
