"""Stage 2, running: configs, the side-by-side runner, the run's own metrics, statistics,
the results store, output rendering and scheduling on Dask.

The runner is handed what later stages derive (a calibrated threshold, extra measurement
functions); it imports none of them."""
