"""``e2eebench bench psi``: PSI costs and their ratios to one scalar multiplication, one run."""
from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo

    @bench_app.command("psi")
    def bench_psi_cmd(size: int = typer.Option(2000, "--size", help="list size (synthetic hashes)"),
                      images: int = typer.Option(200, "--images", help="vouchers/requests timed"),
                      t: int = typer.Option(30, "--t", help="tpsi-ad threshold for the reconstruction timing"),
                      year_images: int = typer.Option(3650, "--year-images",
                                                      help="distinct images per account-year (assumed) for tpsi-ad"),
                      seed: int = SeedOpt, fmt: str = FormatOpt) -> None:
        """psi-ad vs openmined-psi: provider per voucher, device per image, setup and bundle per element;
        tpsi-ad's threshold reconstruction for an account-year at synthetic rates 0.01-0.2."""
        import pandas as pd
        from e2eebench.evaluation.bench.psi import bench_psi
        from e2eebench.evaluation.run.output import render
        from e2eebench.protocols.errors import ConfigError
        check_format(fmt)
        if not 1 <= t <= 200:
            raise ConfigError(f"--t must be in 1..200, got {t}")
        r = bench_psi(size, images, seed=seed, t=t, year_images=year_images)
        def name(k: str) -> str:  # "[one-scalar]" would be read as markup by the table renderer
            return k.replace("[", "(").replace("]", ")")
        rows = [{"metric": k, "value": (f"{v:.4g}" if isinstance(v, float) else str(v))}
                for k, v in r.items() if k not in ("checks", "goals")]
        rows += [{"metric": f"goal:{name(k)}", "value": f"{g['value']:.4g} ({g['goal']}: {'met' if g['met'] else 'NOT met'})"}
                 for k, g in r["goals"].items()]
        rows += [{"metric": f"check:{name(k)}", "value": str(v)} for k, v in r["checks"].items()]
        echo(render(pd.DataFrame(rows), fmt, title=f"bench psi (list {r['list_size']}, {r['list']})", records=r))
