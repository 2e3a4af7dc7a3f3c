"""``e2eebench bench bundle``: device bundle bytes and 1% update bytes against list size."""
from __future__ import annotations

import typer

from e2eebench.protocols.errors import ConfigError


def parse_sizes(text: str) -> list[int]:
    """'1000,10000,1e5' -> [1000, 10000, 100000]; anything else is a ConfigError naming it."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"--sizes: {part!r} is not a number") from None
        if v != int(v) or v < 1:
            raise ConfigError(f"--sizes: {part!r} is not a positive integer")
        out.append(int(v))
    if not out:
        raise ConfigError("--sizes: give at least one list size")
    return out


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from e2eebench.evaluation.cli import FormatOpt, SeedOpt, check_format, echo, progress_bar

    @bench_app.command("bundle")
    def bench_bundle_cmd(
        sizes: str = typer.Option("1000,10000,100000,1000000,10000000", "--sizes",
                                  help="comma-separated list sizes (synthetic hashes)"),
        fpr: float = typer.Option(1e-6, "--fpr", help="Bloom false-positive rate (schemes and PSI)"),
        measure_max: int = typer.Option(100_000, "--measure-max",
                                        help="build real bundles up to this size; larger sizes are "
                                             "measured on empty filters or extrapolated (labelled)"),
        psi_max: int = typer.Option(10_000, "--psi-max", help="largest size for live OpenMined PSI setup"),
        timing: int = typer.Option(20, "--timing", help="images timed per scheme and measured size (0: none)"),
        seed: int = SeedOpt, fmt: str = FormatOpt) -> None:
        """Device bundle bytes per scheme vs list size, beside OpenMined PSI setup messages."""
        import pandas as pd
        from e2eebench.evaluation.bench_device import bench_bundle
        from e2eebench.evaluation.output import render
        check_format(fmt)
        if measure_max < 1 or psi_max < 0 or timing < 0:
            raise ConfigError("--measure-max must be positive, --psi-max and --timing non-negative")
        with progress_bar() as cb:
            rows = bench_bundle(parse_sizes(sizes), seed=seed, fpr=fpr, measure_max=measure_max,
                                psi_max=psi_max, n_timing=timing, progress=cb)
        cols = ["scheme", "list_size", "bundle_bytes", "bundle_label", "update_bytes", "update_label",
                "update_new_keys", "client_ms", "provider_ms", "timing_n", "build_s", "filter_keys",
                "random_match_prob"]
        df = pd.DataFrame(rows)
        df = df[[c for c in cols if c in df.columns]]
        echo(render(df, fmt, title=f"bench bundle (synthetic hashes, fpr {fpr:g})", records=rows))
