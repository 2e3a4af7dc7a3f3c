"""Where the schemes run: in this process (default), in a pool of forked processes on this
machine (``processes``, the standard profile's default), or on a Dask cluster (``--scheduler``).

A forked pool shares the prepared work with its workers copy-on-write: the rendered images and
their encodings (hundreds of kilobytes per image message) are neither pickled nor copied, so two
workers cost one copy of the traffic, not three.

A user who outgrows one machine points the same command at a cluster: each scheme's run
over the shared work (the same corpus, list, traffic and rendered images) becomes one task;
the task runs the scheme and measures it on the worker, and only the measurements come
back. CPU times are still those actually spent by each party, on the worker that ran it.
"""
from __future__ import annotations

import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
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


def _in_process(data: RunData, names: list[str], extra: Sequence[MeasureFn], progress: Progress | None,
                keep_runs: bool) -> tuple[list[SchemeRun], list[Measurement]]:
    """Each scheme run and measured in turn; unless kept, its run (transfers, spilled views,
    provider and device states) is dropped before the next starts, so memory holds one scheme."""
    runs, out = [], []
    for n in names:
        r = run_scheme(n, data, progress)
        out.extend(measure(r, data, extra))
        if keep_runs:
            runs.append(r)
        del r
        gc.collect()   # scheme states sit in reference cycles (endpoints, closures): free them now
    return runs, out


PROCESSES = "processes"     # the scheduler value of a forked pool on this machine
WORKERS = 2
_SHARED: tuple[RunData, Sequence[MeasureFn]] | None = None   # the work a forked worker inherits


def _forked_task(name: str) -> list[Measurement]:
    assert _SHARED is not None, "a forked worker inherits the shared work"
    data, extra = _SHARED
    return run_and_measure(name, data, extra)


def _forked(data: RunData, names: list[str], extra: Sequence[MeasureFn],
            progress: Progress | None) -> list[Measurement]:
    """Each scheme one task in a pool of forked workers; the slow sampled schemes are started
    first so that they do not finish last alone; results come back in ``names`` order."""
    from e2eebench.protocols.registry import scheme_class
    global _SHARED
    _SHARED = (data, extra)
    order = sorted(names, key=lambda n: scheme_class(n).quick_sample is None)   # stable: slow ones first
    try:
        with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {n: pool.submit(_forked_task, n) for n in order}
            out: list[Measurement] = []
            for i, n in enumerate(names):
                out.extend(futures[n].result())
                if progress:
                    progress("schemes (processes)", i + 1, len(names))
            return out
    finally:
        _SHARED = None


def forked_pool_usable() -> bool:
    """A forked pool needs ``fork`` (Linux) and a process allowed to start children."""
    return "fork" in multiprocessing.get_all_start_methods() and pool_usable("the schemes run")


def run_schemes(data: RunData, names: list[str], extra: Sequence[MeasureFn], scheduler: str | None = None,
                progress: Progress | None = None,
                keep_runs: bool = True) -> tuple[list[SchemeRun], list[Measurement]]:
    """Run and measure every scheme (``extra``: the measurement stages' functions, as for
    :func:`measure`); with a scheduler the SchemeRun objects stay on the workers. ``keep_runs``
    (in process): return the SchemeRun objects too (notebooks read them); the CLI does not."""
    if scheduler is None:
        return _in_process(data, names, extra, progress, keep_runs)
    if scheduler == PROCESSES:
        if not forked_pool_usable():
            return _in_process(data, names, extra, progress, keep_runs)
        return [], _forked(data, names, extra, progress)
    if scheduler == "local" and not pool_usable("the schemes run"):
        return _in_process(data, names, extra, progress, keep_runs)
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
