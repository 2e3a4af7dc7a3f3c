"""The ``e2eebench`` command line: list, hash, run, sweep, export, bench, accuracy, attack, report.

Every user error (unknown name, malformed config, unreadable image, wrong hash length,
corrupt protocol message) becomes one line on stderr and exit code 2; no traceback and
no half-written results.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

try:  # recent Typer vendors its own copy of Click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older Typer on upstream Click
    from click import exceptions as click_exc

from e2eebench.protocols.errors import ConfigError, E2EEBenchError, InputError
from e2eebench.evaluation.cli import (accuracy as _accuracy, attack as _attack, device as _device,
                                      he as _he, psi as _psi, report as _report, sweep as _sweep)
from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo, progress_bar

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Test bed for detecting known images in end-to-end encrypted messaging.")
bench_app = typer.Typer(no_args_is_help=True, help="Cost sweeps (index, psi, he, ...).")
app.add_typer(bench_app, name="bench")


@app.command("list")
def list_cmd(what: str = typer.Argument("schemes", help="schemes, hashers, corpora or transforms"),
             fmt: str = FormatOpt) -> None:
    """List what is registered."""
    import pandas as pd
    from e2eebench.evaluation.run.output import render
    check_format(fmt)
    if what == "schemes":
        from e2eebench.protocols.framework import EU_CATEGORIES
        from e2eebench.protocols.registry import list_schemes
        rows = [{"name": c.name, "family": c.family, "eu_category": EU_CATEGORIES[c.eu_category],
                 "matching": c.matching, "verdict_to": c.verdict_to, "trust": c.trust,
                 "modelled": c.modelled, "description": c.description} for c in list_schemes()]
    elif what == "hashers":
        from e2eebench.clientside.hashing import list_hashers
        rows = [{"name": h.name, "bits": h.bits, "default_threshold": h.default_threshold,
                 "library": h.library, "description": h.description} for h in list_hashers()]
    elif what == "corpora":
        from e2eebench.evaluation.data.corpora import list_corpora
        rows = [{"name": n, "description": d} for n, d in list_corpora()]
    elif what == "transforms":
        from e2eebench.evaluation.data.transforms import list_transforms
        rows = [r if isinstance(r, dict) else {"name": r[0], "description": r[1]} for r in list_transforms()]
    else:
        raise ConfigError(f"cannot list {what!r} (choose schemes, hashers, corpora or transforms)")
    echo(render(pd.DataFrame(rows), fmt, title=what))


@app.command("hash")
def hash_cmd(files: List[Path] = typer.Argument(..., help="image files"),
             hasher: str = typer.Option("pdq", "--hasher", help="pdq, phash, dhash, ahash, whash"),
             fmt: str = FormatOpt) -> None:
    """Print the hash (and PDQ quality) of each file."""
    import pandas as pd
    from e2eebench.clientside.hashing import get_hasher, load_image
    from e2eebench.evaluation.run.output import render
    check_format(fmt)
    h = get_hasher(hasher)
    images = [(f, load_image(f)) for f in files]  # read all first: one bad file, no partial output
    rows = []
    for f, im in images:
        r = {"file": str(f), "hasher": h.name, "hash": h.hash(im).tobytes().hex()}
        if h.has_quality:
            r["quality"] = h.quality(im)
        rows.append(r)
    echo(render(pd.DataFrame(rows), fmt))


PROFILES = ("quick", "standard")


def profile_path(profile: str) -> Path:
    """A built-in profile's TOML (quick, standard) or a profile FILE."""
    from e2eebench.evaluation.run.config import builtin_config
    return builtin_config(profile) if profile in PROFILES else Path(profile)


def apply_sizes(cfg, n_known: Optional[int] = None, n_benign: Optional[int] = None,
                n_accounts: Optional[int] = None, messages: Optional[int] = None):
    """Command-line sizing on top of a profile: list, benign set and the workload's size
    (``messages`` sets the days so that about that many messages are sent)."""
    import math
    from dataclasses import replace
    for name, v in (("--n-known", n_known), ("--n-benign", n_benign), ("--n-accounts", n_accounts),
                    ("--messages", messages)):
        if v is not None and v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v}")
    if n_known is not None:
        cfg.n_known = n_known
    if n_benign is not None:
        cfg.n_benign = n_benign
    wl = cfg.workload
    if n_accounts is not None:
        wl = replace(wl, n_accounts=n_accounts)
    if messages is not None:
        per_day = wl.n_accounts * wl.messages_per_account_per_day
        if per_day <= 0:
            raise ConfigError("--messages needs workload.messages_per_account_per_day > 0")
        wl = replace(wl, days=max(1, math.ceil(messages / per_day)))
    cfg.workload = wl
    return cfg


def build_run_config(config: Optional[Path], quick: bool, schemes: Optional[str], corpus: Optional[str],
                     hasher: Optional[str], seed: Optional[int], threshold: Optional[str],
                     list_size: Optional[int] = None, profile: Optional[str] = None):
    from e2eebench.evaluation.run.config import load_config
    from e2eebench.protocols.registry import SCHEMES, parse_scheme_list
    if quick:
        if profile not in (None, "quick"):
            raise ConfigError("--quick means --profile quick: give one of them")
        profile = "quick"
    if config is not None and profile is not None:
        raise ConfigError("give --profile (or --quick) or --config FILE, not both")
    if config is None and profile is None:
        raise ConfigError("give --quick (or --profile quick|standard|FILE) for a built-in comparison, or --config FILE")
    cfg = load_config(config if config is not None else profile_path(profile))
    if schemes:
        cfg.schemes = parse_scheme_list(schemes)
    elif not cfg.schemes:
        cfg.schemes = [n for n, c in SCHEMES.items()]
    else:
        cfg.schemes = parse_scheme_list(",".join(cfg.schemes))
    if corpus:
        cfg.corpus = corpus
    if hasher:
        from e2eebench.clientside.hashing import get_hasher
        cfg.hasher = get_hasher(hasher).name
    if seed is not None:
        cfg.seed = seed
    if threshold:
        cfg.threshold = threshold
    if list_size is not None:
        cfg.list_size = list_size
    return cfg


@app.command("run")
def run_cmd(quick: bool = typer.Option(False, "--quick", help="the quick profile (same as --profile quick)"),
            profile: Optional[str] = typer.Option(None, "--profile", help="quick, standard or a profile FILE"),
            config: Optional[Path] = typer.Option(None, "--config", help="TOML run configuration"),
            n_known: Optional[int] = typer.Option(None, "--n-known", help="images declared known (the list)"),
            n_benign: Optional[int] = typer.Option(None, "--n-benign", help="distinct benign images"),
            n_accounts: Optional[int] = typer.Option(None, "--n-accounts", help="accounts in the workload"),
            messages: Optional[int] = typer.Option(None, "--messages", help="about this many messages (sets the days)"),
            schemes: Optional[str] = typer.Option(None, "--schemes", help="comma-separated scheme names"),
            corpus: Optional[str] = typer.Option(None, "--corpus", help="dead-leaves, bundled or folder:PATH"),
            hasher: Optional[str] = typer.Option(None, "--hasher"),
            seed: Optional[int] = typer.Option(None, "--seed", help="seed (default: the config's, 0)"),
            threshold: Optional[str] = typer.Option(None, "--threshold", help="default, calibrated or an integer"),
            list_size: Optional[int] = typer.Option(None, "--list-size", min=1,
                                                    help="pad the known list with labelled synthetic hashes to N entries (cost at N)"),
            db: Path = typer.Option(Path("e2eebench.duckdb"), "--db", help="results database (DuckDB file)"),
            scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                                    help="Dask scheduler address, 'local' (a 2-process Dask cluster) or 'processes' "
                                                         "(2 forked workers; the standard profile's default); default: in-process"),
            fmt: str = FormatOpt) -> None:
    """Run every selected scheme over the same traffic and print one row per scheme."""
    from e2eebench.evaluation.api import run
    from e2eebench.evaluation.run.output import render, summary_json, summary_wide
    check_format(fmt)
    cfg = build_run_config(config, quick, schemes, corpus, hasher, seed, threshold, list_size, profile)
    cfg = apply_sizes(cfg, n_known, n_benign, n_accounts, messages)
    if cfg.corpus.startswith("folder:"):
        p = Path(cfg.corpus[len("folder:"):])
        if not p.is_dir():
            raise InputError(f"not a readable folder: {p}")
    with progress_bar() as cb:
        result = run(cfg, db=str(db), progress=cb, scheduler=scheduler, keep_runs=False)
    if result.data.notice:
        print(f"e2eebench: note: {result.data.notice}", file=sys.stderr)
    cfg = result.data.config
    order = {n: i for i, n in enumerate(cfg.schemes)}  # rows in the order the user asked for
    df = result.measurements.sort_values("scheme", key=lambda c: c.map(order), kind="stable")
    title = (f"run {result.run_id} (seed {cfg.seed}, {cfg.hasher}, {cfg.corpus}, list {len(result.data.db)}, "
             f"threshold {cfg.threshold}: {result.data.threshold if result.data.threshold is not None else 'n/a'})")
    if fmt == "table":
        from e2eebench.evaluation.run.output import render_run_terminal
        render_run_terminal(df, title, order=cfg.schemes)
        return
    echo(render(summary_wide(df), fmt, title=title,
                records={"run_id": result.run_id, "config": cfg.to_dict(), "schemes": summary_json(df)}))


@app.command("export")
def export_cmd(run: str = typer.Option("latest", "--run", help="run id or 'latest'"),
               fmt: str = typer.Option("md", "--format", "-f", help="md, csv, json (long form), latex, xlsx or html"),
               db: Path = typer.Option(Path("e2eebench.duckdb"), "--db"),
               rubric: Optional[Path] = typer.Option(None, "--rubric", help="rubric TOML (default: the built-in one)"),
               out: Optional[Path] = typer.Option(None, "--out", help="file to write (default: stdout)")) -> None:
    """Export a stored run's assessment table (ratings per the rubric, with provenance)."""
    from e2eebench.evaluation.assess.exporting import EXPORT_FORMATS, export_run
    check_format(fmt, EXPORT_FORMATS)
    if not db.exists():
        raise InputError(f"no results database at {db} (run 'e2eebench run --quick' first)")
    if fmt == "xlsx" and out is None:
        raise ConfigError("--format xlsx needs --out FILE (a workbook is not text)")
    text = export_run(str(db), run, fmt, None if rubric is None else str(rubric))
    if out is None:
        echo(text if isinstance(text, str) else None)
    else:
        from e2eebench.evaluation.assess.exporting import write_atomic
        write_atomic(out, text)
        echo(f"wrote {out}")


@bench_app.command("index")
def bench_index_cmd(size: int = typer.Option(100_000, "--size", min=1),
                    threshold: int = typer.Option(31, "--threshold", min=0),
                    queries: int = typer.Option(50, "--queries", min=1),
                    data: str = typer.Option("uniform", "--data", help="uniform or pdq (clustered real PDQ)"),
                    repeats: int = typer.Option(3, "--repeats", min=1, help="timing rounds per query"),
                    peers: bool = typer.Option(True, "--peers/--no-peers", help="FAISS beside ours when installed"),
                    seed: int = SeedOpt, fmt: str = FormatOpt) -> None:
    """Linear scan and multi-index hashing, beside FAISS's when faiss-cpu is installed."""
    import pandas as pd
    from e2eebench.evaluation.bench.index import bench_index
    from e2eebench.evaluation.run.output import render
    check_format(fmt)
    if threshold > 256:
        raise ConfigError("--threshold must be at most 256 for 256-bit hashes")
    r = bench_index(size, threshold, n_queries=queries, seed=seed, data=data, repeats=repeats, peers=peers)
    echo(render(pd.DataFrame([r]), fmt, title="bench index", records=r))


# the command groups in this package, in help order: each module defines register(app, bench_app)
for _group in (_report, _psi, _accuracy, _device, _attack, _he, _sweep):
    _group.register(app, bench_app)


def main(argv: list[str] | None = None) -> int:
    """Run the app; every failure is one line on stderr: exit 2 for errors, 130 for Ctrl-C."""
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="e2eebench")
    except E2EEBenchError as e:
        return fail(str(e))
    except getattr(click_exc, "NoArgsIsHelpError", ()):
        return 0
    except click_exc.ClickException as e:
        return fail(" ".join(e.format_message().split()))
    except (typer.Abort, KeyboardInterrupt):
        return interrupted()
    except typer.Exit as e:
        return interrupted() if e.exit_code == 130 else e.exit_code
    except Exception as e:  # a bug or an unforeseen library error: still one line, still exit 2
        first = (str(e).splitlines() or [""])[0]
        return fail(f"unexpected {type(e).__name__}: {first}")
    # Typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns the code
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        return interrupted() if rv == 130 else rv
    return 0


def fail(message: str) -> int:
    print(f"e2eebench: error: {message}", file=sys.stderr)
    return 2


def interrupted() -> int:
    print("e2eebench: interrupted; nothing was left half-written", file=sys.stderr)
    return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
