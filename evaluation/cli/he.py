"""``e2eebench bench he``: HE matching cost against list size, stored and optionally plotted."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from e2eebench.protocols.errors import ConfigError

COLUMNS = ["engine", "key_holder", "list_size", "label", "blocks", "slot_utilisation", "device_ms",
           "provider_ms", "third_party_ms", "query_bytes", "result_bytes", "keys_on_channel_bytes",
           "device_storage_bytes", "correct", "n_queries"]
METRICS = {"device_ms": "ms", "provider_ms": "ms", "third_party_ms": "ms", "query_bytes": "bytes",
           "result_bytes": "bytes", "keys_on_channel_bytes": "bytes", "device_storage_bytes": "bytes",
           "slot_utilisation": "rate", "max_abs_error": "cosine"}


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--sizes must be positive integers, got {text!r}")
    return sizes


# the registered scheme that is an engine with its key at a third party (the rows join its row)
THIRD_PARTY_SCHEME = {"he-hamming": "he-hamming-3p"}


def to_measurements(rows: list[dict]) -> list:
    """One stored measurement per (row, metric); the scheme name carries the key placement."""
    from e2eebench.evaluation.run.stats import mean_ci
    from e2eebench.evaluation.run.store import Measurement
    out = []
    for r in rows:
        scheme = r["engine"] if r["key_holder"] == "device" else THIRD_PARTY_SCHEME.get(r["engine"], f"{r['engine']}[third-party]")
        params = {k: r[k] for k in ("list_size", "blocks", "result_ciphertexts", "key_holder") if k in r}
        params |= {"synthetic_list": True, "fit": r.get("fit")}
        for metric, unit in METRICS.items():
            if metric not in r:
                continue
            n = max(1, int(r["n_queries"]))
            ci = (None, None)
            if metric == "provider_ms" and isinstance(r.get("provider_samples"), list) and len(r["provider_samples"]) > 1:
                e = mean_ci(r["provider_samples"])
                ci = (e.ci_low, e.ci_high)
            out.append(Measurement(scheme, metric, float(r[metric]), unit, n if r["label"] == "measured" else 0,
                                   ci[0], ci[1], params, None, r["label"]))
    return out


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo, progress_bar

    @bench_app.command("he")
    def bench_he_cmd(sizes: str = typer.Option("100,1000,10000,100000", "--sizes",
                                               help="comma-separated list sizes to measure"),
                     queries: int = typer.Option(2, "--queries", min=1, help="queries per size"),
                     engines: str = typer.Option("he-hamming,he-cosine", "--engines"),
                     seed: int = SeedOpt,
                     db: Path = typer.Option(Path("e2eebench.duckdb"), "--db", help="results database"),
                     plot: Optional[Path] = typer.Option(None, "--plot", help="write the cost curve PNG here"),
                     fmt: str = FormatOpt) -> None:
        """Device, provider and third-party ms and bytes per query against list size (HE)."""
        import pandas as pd
        from e2eebench.evaluation.bench.he import bench_he
        from e2eebench.evaluation.run.output import render
        from e2eebench.evaluation.run.store import ResultStore
        check_format(fmt)
        size_list = parse_sizes(sizes)
        eng = [e.strip() for e in engines.split(",") if e.strip()]
        if plot is not None and not plot.parent.exists():
            raise ConfigError(f"folder for --plot does not exist: {plot.parent}")
        with progress_bar() as cb:
            rows = bench_he(size_list, n_queries=queries, seed=seed, engines=eng, progress=cb)
        with ResultStore(db) as store:
            run_id = store.write_run(to_measurements(rows), command="bench he",
                                     config={"sizes": size_list, "queries": queries, "engines": eng}, seed=seed)
        if plot is not None:
            from e2eebench.evaluation.bench.plots import plot_cost_curve
            plot_cost_curve(rows, plot)
        df = pd.DataFrame(rows)
        cols = [c for c in COLUMNS if c in df.columns]
        df = df[cols].round({"slot_utilisation": 3, "device_ms": 1, "provider_ms": 1, "third_party_ms": 1})
        if "correct" in df.columns:
            df["correct"] = df["correct"].astype("Int64")
        echo(render(df, fmt, title=f"bench he (run {run_id}; synthetic lists; CPU ms per query)",
                    records={"run_id": run_id, "rows": rows}))
