"""``e2eebench accuracy``: the Thorn-style robustness benchmark, and ``accuracy account``.

    e2eebench accuracy --hashers pdq,phash --transforms jpeg:q=50,crop:0.05 --n 200 --format json
    e2eebench accuracy account --fpr 1e-6 --messages 7300 --t 1,30 --mc 20000
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer

from e2eebench.protocols.errors import ConfigError


def _split(text: Optional[str]) -> list[str] | None:
    if text is None:
        return None
    out = [s.strip() for s in text.split(",") if s.strip()]
    if not out:
        raise ConfigError(f"empty list: {text!r}")
    return out


def _floats(name: str, text: str) -> list[float]:
    try:
        return [float(x) for x in _split(text) or []]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None


def _ints(name: str, text: str) -> list[int]:
    try:
        return [int(x) for x in _split(text) or []]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated integers, got {text!r}") from None


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo, progress_bar

    acc = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                      help="Robustness benchmark of the hashers (Thorn's method) and the account-level model.")
    app.add_typer(acc, name="accuracy")

    @acc.callback(invoke_without_command=True)
    def accuracy_cmd(ctx: typer.Context,
                     hashers: Optional[str] = typer.Option(None, "--hashers", help="comma-separated (default: all)"),
                     transforms: Optional[str] = typer.Option(None, "--transforms",
                                                              help="comma-separated specs (default: the 17-family standard suite)"),
                     corpus: str = typer.Option("mix", "--corpus",
                                                help="mix (bundled photos + dead-leaves), dead-leaves, bundled or folder:PATH"),
                     n: int = typer.Option(200, "--n", help="number of distinct source images"),
                     size: int = typer.Option(256, "--size", help="dead-leaves image size in pixels"),
                     precision: float = typer.Option(0.9999, "--precision", help="precision for recall_at_precision"),
                     quality_filter: bool = typer.Option(False, "--quality-filter",
                                                         help="also report PDQ with hashes of quality < 50 discarded"),
                     workers: int = typer.Option(2, "--workers", help="hashing processes"),
                     db: Optional[Path] = typer.Option(None, "--db", help="store the rows in this results database"),
                     plots: Optional[Path] = typer.Option(None, "--plots", help="folder for PNG plots"),
                     calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                                    help="also report recall at the calibrated threshold"),
                     seed: int = SeedOpt, fmt: str = FormatOpt) -> None:
        """Per hasher x transform: recall, recall at precision, TPR at FPR, pair FPR, distances."""
        if ctx.invoked_subcommand is not None:
            return
        from e2eebench.evaluation.accuracy.robustness import RobustnessBenchmark
        from e2eebench.evaluation.run.output import render
        check_format(fmt)
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        if db is not None and not db.parent.exists():
            raise ConfigError(f"folder for --db does not exist: {db.parent}")
        bench = RobustnessBenchmark(_split(hashers), _split(transforms), corpus, n, seed, size=size,
                                    precision=precision, quality_filter=quality_filter, workers=workers,
                                    calibrate=calibrate)
        t0 = time.perf_counter()
        with progress_bar() as cb:
            result = bench.run(cb)
        wall = time.perf_counter() - t0
        frame = result.to_frame()
        config = {"hashers": bench.hashers, "transforms": bench.transforms, "corpus": corpus, "n": n, "size": size,
                  "precision": precision, "quality_filter": quality_filter, "workers": workers, "seed": seed,
                  "sources": result.sources, "wall_s": round(wall, 1), "timings": result.timings}
        run_id = None
        if db is not None:
            from e2eebench.evaluation.run.store import ResultStore
            with ResultStore(db) as store:
                run_id = store.write_run(result.measurements(), command="accuracy", config=config, seed=seed)
        if plots is not None:
            from e2eebench.evaluation.accuracy.plots import save_all
            save_all(result, plots)
        pairs = {r.key: r.pairs for r in result.records}
        title = (f"accuracy: {result.n} sources {result.sources}, {len(bench.transforms)} transforms, "
                 f"unrelated pairs per hasher {pairs}, {wall:.0f} s" + (f", run {run_id}" if run_id else ""))
        if fmt in ("json", "csv"):
            records = {"run_id": run_id, "config": config, "pairs": pairs, "rows": _records(frame)}
            if fmt == "json":
                records |= {"distributions": result.distributions(), "roc": result.roc_curves()}
            echo(render(frame, fmt, title=title, records=records))
            return
        table = _summary(frame)
        echo(render(table, fmt, title=title))

    @acc.command("account")
    def account_cmd(fpr: Optional[str] = typer.Option(None, "--fpr", help="per-image FPR(s), comma-separated"),
                    pair_fpr: Optional[str] = typer.Option(None, "--pair-fpr", help="pair FPR(s), used with --list-size"),
                    list_size: int = typer.Option(1, "--list-size", help="known-list entries (with --pair-fpr)"),
                    tpr: float = typer.Option(1.0, "--tpr", help="per-image TPR on known items"),
                    messages: int = typer.Option(7300, "--messages", help="images per account per year"),
                    t: str = typer.Option("1,30", "--t", help="reporting threshold(s), comma-separated"),
                    known: int = typer.Option(0, "--k", help="known items an offender shares in the year"),
                    mc: int = typer.Option(0, "--mc", help="Monte Carlo accounts for a check (0 = none)"),
                    seed: int = SeedOpt, fmt: str = FormatOpt) -> None:
        """Probability an innocent account (and an offender with k known items) is flagged in a year."""
        import pandas as pd
        from e2eebench.evaluation.accuracy.account_model import AccountModel, image_fpr, log_binom_tail, monte_carlo_tail
        from e2eebench.evaluation.run.output import render
        check_format(fmt)
        if (fpr is None) == (pair_fpr is None):
            raise ConfigError("give exactly one of --fpr (per image) or --pair-fpr (with --list-size)")
        rates = _floats("--fpr", fpr) if fpr is not None else [image_fpr(p, list_size) for p in _floats("--pair-fpr", pair_fpr)]
        if messages < 1:
            raise ConfigError(f"--messages must be at least 1, got {messages}")
        if not 0 <= tpr <= 1:
            raise ConfigError(f"--tpr must be in [0, 1], got {tpr}")
        rows = []
        for p in rates:
            if not 0 <= p <= 1:
                raise ConfigError(f"FPR must be in [0, 1], got {p}")
            for tt in _ints("--t", t):
                model = AccountModel(p, messages, tt, tpr)
                lg = log_binom_tail(messages, p, tt) / math.log(10)
                r = {"image_fpr": p, "messages": messages, "t": tt, "innocent_flag_prob": model.innocent_flag_prob(),
                     "log10_innocent_flag_prob": round(lg, 3) if math.isfinite(lg) else None,
                     "label": "modelled"}
                if known:
                    r["k"] = known
                    r["offender_flag_prob"] = model.offender_flag_prob(known)
                if mc:
                    e = monte_carlo_tail(messages, p, tt, mc, seed)
                    r |= {"mc_estimate": e.value, "mc_ci_low": e.ci_low, "mc_ci_high": e.ci_high, "mc_accounts": mc,
                          "mc_agrees": bool(e.ci_low <= r["innocent_flag_prob"] <= e.ci_high)}
                rows.append(r)
        df = pd.DataFrame(rows)
        echo(render(df, fmt, title="account-level model (modelled from per-image rates)", records=rows))


def _records(frame) -> list[dict]:
    import json
    return json.loads(frame.to_json(orient="records", double_precision=15))


def _summary(frame):
    """One row per hasher x transform: recall at default / Thorn-method / FPR 1e-6, with n."""
    import pandas as pd
    from e2eebench.evaluation.run.output import fmt_value
    rows = {}
    for _, r in frame.iterrows():
        key = (r["hasher"] + ("+q" if pd.notna(r["quality_filter"]) else ""), r["transform"])
        row = rows.setdefault(key, {"hasher": key[0], "transform": key[1]})
        def c() -> str:
            if r["value"] is None or pd.isna(r["value"]):
                return "n/a"
            s = fmt_value(r["value"], "rate")
            if pd.notna(r["ci_low"]):
                s += f" [{fmt_value(r['ci_low'], 'rate')}, {fmt_value(r['ci_high'], 'rate')}]"
            return s
        m = r["metric"]
        if m == "recall":
            row[f"recall@{r['threshold_kind']}"] = c() + f" @{r['threshold']:.0f}"
        elif m == "recall_at_precision":
            row["recall_at_precision"] = c() + (f" @{r['threshold']:.0f}" if pd.notna(r["threshold"]) else "")
        elif m == "tpr_at_fpr" and r["fpr_target"] == 1e-6:
            row["tpr@fpr1e-6"] = c() + (" (bounded)" if isinstance(r["text"], str) else "")
        elif m == "pair_fpr" and r["transform"] == "all":
            pass
        elif m == "coverage":
            row["coverage"] = c()
        elif m == "matched_distance_median":
            row["median_d"] = fmt_value(r["value"])
        if m == "recall" and "n" not in row:
            row["n"] = int(r["n"])
    return pd.DataFrame(list(rows.values()))
