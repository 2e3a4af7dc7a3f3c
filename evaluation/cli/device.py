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
    from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo, progress_bar

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
        from e2eebench.evaluation.bench.device import bench_bundle
        from e2eebench.evaluation.run.output import render
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

    register_lsh(bench_app)


def parse_configs(text: str) -> list[tuple[int, int]]:
    """'8:1,16:2' -> [(8, 1), (16, 2)] (chunks:min_hits)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, sep, b = part.partition(":")
        if not sep or not a.isdigit() or not b.isdigit():
            raise ConfigError(f"--configs: {part!r} is not chunks:min_hits")
        out.append((int(a), int(b)))
    if not out:
        raise ConfigError("--configs: give at least one chunks:min_hits pair")
    return out


def register_lsh(bench_app: typer.Typer) -> None:
    from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo

    @bench_app.command("lsh-bloom")
    def bench_lsh_cmd(sizes: str = typer.Option("40,1000,10000", "--sizes", help="list sizes (40 real + synthetic)"),
                      configs: str = typer.Option("8:1,8:2,16:2,16:3", "--configs", help="chunks:min_hits pairs"),
                      seed: int = SeedOpt, fmt: str = FormatOpt) -> None:
        """Measured recall and FPR of the chunk Bloom filter as the list grows."""
        import pandas as pd
        from e2eebench.evaluation.bench.device import lsh_accuracy
        from e2eebench.evaluation.run.output import render
        check_format(fmt)
        rows = lsh_accuracy(parse_sizes(sizes), parse_configs(configs), seed=seed)
        df = pd.DataFrame(rows).drop(columns=["recall_ci", "fpr_ci"])
        echo(render(df, fmt, title="bench lsh-bloom (jpeg:q=50 + resize:0.5 positives)", records=rows))
