"""``e2eebench attack``: evasion, collision, oracle, dishonest-client and the per-scheme profile.

Each command prints its summary in the chosen format; with ``--db`` it also stores the
measurements (one transaction) for the rubric's security criterion.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from e2eebench.evaluation.cli.options import FormatOpt, SeedOpt, check_format, echo, progress_bar
from e2eebench.protocols.errors import ConfigError

attack_app = typer.Typer(no_args_is_help=True, help="Attacks: evasion, collision, oracle, dishonest-client, profile.")

HasherOpt = typer.Option("pdq", "--hasher", help="pdq, phash (white-box); any hasher for black-box")
SchemeOpt = typer.Option(None, "--scheme", help="scheme the measurement is stored under (default: 'any')")
DbOpt = typer.Option(None, "--db", help="results database to store measurements in (DuckDB file)")
ThresholdOpt = typer.Option(None, "--threshold", help="match threshold attacked (default: the --scheme's, else the hasher's)")
PsnrOpt = typer.Option(35.0, "--psnr-floor", help="a success must keep PSNR >= this (dB) against the start image")
SsimOpt = typer.Option(0.95, "--ssim-floor", help="a success must keep SSIM >= this against the start image")


def _floor(psnr: float, ssim_min: float):
    from e2eebench.evaluation.attacks.evasion import DEFAULT_FLOOR, QualityFloor
    if not 0 < psnr < 100 or not 0 < ssim_min <= 1:
        raise ConfigError(f"quality floor must have 0 < --psnr-floor < 100 and 0 < --ssim-floor <= 1, got {psnr}, {ssim_min}")
    if (psnr, ssim_min) == (DEFAULT_FLOOR.psnr_db, DEFAULT_FLOOR.ssim):
        return DEFAULT_FLOOR
    return QualityFloor(psnr, ssim_min, f"given on the command line: PSNR >= {psnr:g} dB and SSIM >= {ssim_min:g}")


def _threshold(h, scheme: Optional[str], threshold: Optional[int]) -> tuple[int, str]:
    """The threshold attacked and where it came from: given, else the scheme's (0 for exact
    matching), else the hasher's default."""
    if threshold is not None:
        if not 0 <= threshold <= h.bits:
            raise ConfigError(f"--threshold must be in 0..{h.bits} for {h.name}, got {threshold}")
        return threshold, "--threshold"
    if scheme is not None:
        from e2eebench.evaluation.attacks.profile import scheme_threshold
        from e2eebench.protocols.registry import scheme_class
        t = scheme_threshold(scheme_class(scheme)(h))
        return (h.default_threshold, f"{h.name} default (scheme {scheme})") if t is None else (t, f"scheme {scheme}")
    return h.default_threshold, f"{h.name} default (no --scheme given)"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def _print(summary: dict, fmt: str, title: str) -> None:
    import pandas as pd
    from e2eebench.evaluation.run.output import render
    if fmt == "json":
        from e2eebench.evaluation.run.strictjson import dumps
        echo(dumps(summary, indent=1))
        return
    rows = [{"field": k, "value": v} for k, v in _flat(summary).items()]
    echo(render(pd.DataFrame(rows), fmt, title=title))


def _store(db: Optional[Path], ms: list, command: str, config: dict, seed: int) -> str | None:
    if db is None:
        return None
    from e2eebench.evaluation.run.store import ResultStore
    with ResultStore(db) as st:
        return st.write_run(ms, command=command, config=config, seed=seed)


def _scheme(name: Optional[str]) -> str:
    if name is None:
        return "any"
    from e2eebench.protocols.registry import scheme_class
    return scheme_class(name).name


def _attack_ms(scheme: str, metric: str, s: dict, params: dict) -> list:
    from e2eebench.evaluation.run.store import Measurement
    f = s["quality_floor"]
    params = params | {"threshold": s["threshold"], "psnr_floor_db": f["psnr_db"], "ssim_floor": f["ssim"]}
    ms = [Measurement(scheme, f"{metric}_success_rate", s["success_rate"], "rate", s["n"], s["ci_low"], s["ci_high"], params,
                      text="success counted only above the quality floor")]
    if s["psnr_db"]["median"] is not None:
        ms.append(Measurement(scheme, f"{metric}_psnr_db", s["psnr_db"]["median"], "dB", s["successes"],
                              s["psnr_db"]["p10"], s["psnr_db"]["p90"], params | {"stat": "median [p10, p90]"}))
        ms.append(Measurement(scheme, f"{metric}_ssim", s["ssim"]["median"], "ssim", s["successes"],
                              s["ssim"]["p10"], s["ssim"]["p90"], params | {"stat": "median [p10, p90]"}))
    return ms


@attack_app.command("evasion")
def evasion_cmd(hasher: str = HasherOpt, scheme: Optional[str] = SchemeOpt,
                n: int = typer.Option(20, "--n", help="number of images"),
                budget: int = typer.Option(300, "--budget", help="query budget per image"),
                mode: str = typer.Option("black-box", "--mode", help="black-box or white-box"),
                corpus: str = typer.Option("dead-leaves", "--corpus"),
                threshold: Optional[int] = ThresholdOpt, psnr_floor: float = PsnrOpt, ssim_floor: float = SsimOpt,
                seed: int = SeedOpt, db: Optional[Path] = DbOpt, fmt: str = FormatOpt) -> None:
    """Move hashes beyond the threshold with a low-frequency perturbation; success only above the
    quality floor, and as curves over PSNR/SSIM floors and queries."""
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.attacks.evasion import corpus_images, run_evasion, summarise
    check_format(fmt)
    h, sname = get_hasher(hasher), _scheme(scheme)
    if mode not in ("black-box", "white-box"):
        raise ConfigError(f"--mode must be black-box or white-box, got {mode!r}")
    if budget < 10:
        raise ConfigError(f"--budget must be at least 10 queries, got {budget}")
    fl, (thr, src) = _floor(psnr_floor, ssim_floor), _threshold(h, scheme, threshold)
    images = corpus_images(corpus, n, seed)
    with progress_bar() as cb:
        rs = run_evasion(h, images, mode, budget, seed, cb, threshold=thr)
    s = summarise(rs, h, budget, floor=fl, threshold=thr, threshold_source=src)
    params = {"hasher": h.name, "mode": mode, "budget": budget, "corpus": corpus}
    s["run_id"] = _store(db, _attack_ms(sname, "evasion", s, params), "attack evasion", params, seed)
    _print(s, fmt, f"evasion {h.name} {mode} (n={n}, budget {budget})")


@attack_app.command("collision")
def collision_cmd(hasher: str = typer.Option("phash", "--hasher"), scheme: Optional[str] = SchemeOpt,
                  n: int = typer.Option(10, "--n", help="number of target list entries"),
                  budget: int = typer.Option(400, "--budget"),
                  mode: str = typer.Option("white-box", "--mode", help="white-box or black-box"),
                  second: str = typer.Option("auto", "--second-hash", help="provider's secret second hasher, or 'none'"),
                  figure: Optional[Path] = typer.Option(None, "--figure", help="write a demonstration pair (PNG)"),
                  threshold: Optional[int] = ThresholdOpt, psnr_floor: float = PsnrOpt, ssim_floor: float = SsimOpt,
                  seed: int = SeedOpt, db: Optional[Path] = DbOpt, fmt: str = FormatOpt) -> None:
    """Forge innocuous images whose hash falls within the threshold of list hashes; success only
    above the quality floor (and as curves over it), with and without a secret second hash."""
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.attacks.collision import render_collision_figure, run_collisions, summarise_collisions
    check_format(fmt)
    h, sname = get_hasher(hasher), _scheme(scheme)
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if figure is not None and not figure.parent.exists():
        raise ConfigError(f"folder for --figure does not exist: {figure.parent}")
    sec = None if second == "none" else second
    fl, (thr, src) = _floor(psnr_floor, ssim_floor), _threshold(h, scheme, threshold)
    with progress_bar() as cb:
        cases = run_collisions(h, n, mode, budget, seed, second=sec, progress=cb, threshold=thr)
    s = summarise_collisions(cases, h, budget, floor=fl, threshold=thr, threshold_source=src)
    if figure is not None:
        win = next((c for c in cases if fl.admits(c.result)), None) or next((c for c in cases if c.result.success), None)
        if win is None:
            raise ConfigError("no successful collision to draw; nothing written")
        s["figure"] = render_collision_figure(figure, win, h)
    params = {"hasher": h.name, "mode": mode, "budget": budget}
    ms = _attack_ms(sname, "collision", s, params)
    if "with_secret_second_hash" in s:
        from e2eebench.evaluation.run.store import Measurement
        w = s["with_secret_second_hash"]
        ms.append(Measurement(sname, "collision_success_rate_second_hash", w["success_rate"], "rate", w["n"],
                              w["ci_low"], w["ci_high"], ms[0].params | {"second_hasher": w["second_hasher"]},
                              text=w["counts"]))
    s["run_id"] = _store(db, ms, "attack collision", params, seed)
    s["cases"] = [c.record() for c in cases]
    _print(s, fmt, f"collision {h.name} {mode} (n={n})")


@attack_app.command("oracle")
def oracle_cmd(hasher: str = HasherOpt, scheme: str = typer.Option("on-device-list", "--scheme"),
               n: int = typer.Option(2000, "--n", help="candidate pool size"),
               list_size: int = typer.Option(40, "--list", help="list entries"),
               seed: int = SeedOpt, db: Optional[Path] = DbOpt, fmt: str = FormatOpt) -> None:
    """Offline membership testing with a scheme's real device role: class, throughput, list confirmed."""
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.attacks.oracle import run_oracle
    from e2eebench.evaluation.run.store import Measurement
    check_format(fmt)
    h, sname = get_hasher(hasher), _scheme(scheme)
    if n < list_size or list_size < 2:
        raise ConfigError(f"--n ({n}) must be at least --list ({list_size}) and --list at least 2")
    with progress_bar() as cb:
        r = run_oracle(sname, h, n, list_size, seed, progress=cb)
    params = {"hasher": h.name, "list": list_size, "candidates": r.candidates}
    ms = [Measurement(sname, "membership_oracle_class", None, "text", 1, params=params, text=f"{r.oracle}: {r.reason}"),
          Measurement(sname, "oracle_queries_per_s", r.queries_per_s, "1/s", r.candidates, params=params)]
    s = r.record() | {"run_id": _store(db, ms, "attack oracle", params, seed)}
    _print(s, fmt, f"oracle {sname}")


@attack_app.command("dishonest-client")
def dishonest_cmd(hasher: str = HasherOpt, scheme: Optional[str] = typer.Option(None, "--scheme", help="one scheme (default: all)"),
                  seed: int = SeedOpt, db: Optional[Path] = DbOpt, fmt: str = FormatOpt) -> None:
    """Strip, replay, garble, forge or substitute payloads; what each scheme's provider notices."""
    import pandas as pd
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.attacks.dishonest import MANIPULATIONS, relay_swap_detected, run_dishonest
    from e2eebench.evaluation.run.output import render
    from e2eebench.evaluation.run.store import Measurement
    from e2eebench.protocols.registry import SCHEMES
    check_format(fmt)
    h = get_hasher(hasher)
    names = [_scheme(scheme)] if scheme else list(SCHEMES)
    with progress_bar() as cb:
        res = run_dishonest(names, h, seed, progress=cb)
    relay = relay_swap_detected(seed)
    ms = []
    for r in res:
        for m in MANIPULATIONS[1:]:
            v = r.noticed(m)
            ms.append(Measurement(r.scheme, f"payload_{m}_detected", None if v is None else float(v), "bool", 1,
                                  params={"hasher": h.name} | r.params, text=r.outcomes.get(m)))
    run_id = _store(db, ms, "attack dishonest-client", {"hasher": h.name}, seed)
    rows = [r.record() for r in res]
    echo(render(pd.DataFrame(rows), fmt, title=f"dishonest client ({h.name}); relay swap detected: {relay}",
                records={"run_id": run_id, "relay_swap_detected": relay, "schemes": rows}))


@attack_app.command("profile")
def profile_cmd(hasher: str = HasherOpt, schemes: Optional[str] = typer.Option(None, "--schemes", help="comma-separated (default: all)"),
                n: int = typer.Option(20, "--n", help="images for the evasion and collision attacks"),
                budget: int = typer.Option(400, "--budget"),
                seed: int = SeedOpt, db: Path = typer.Option(Path("e2eebench.duckdb"), "--db"),
                fmt: str = FormatOpt) -> None:
    """Every scheme's security profile (applicability measured, attack rates) into the results store."""
    import pandas as pd
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.attacks.collision import run_collisions, summarise_collisions
    from e2eebench.evaluation.attacks.evasion import WHITEBOX_HASHERS, corpus_images, run_evasion, summarise
    from e2eebench.evaluation.run.output import render
    from e2eebench.evaluation.attacks.profile import run_profile
    from e2eebench.protocols.registry import SCHEMES, parse_scheme_list
    check_format(fmt)
    h = get_hasher(hasher)
    names = parse_scheme_list(schemes) if schemes else list(SCHEMES)
    images = corpus_images("dead-leaves", n, seed)
    with progress_bar() as cb:
        ev = {"black-box": summarise(run_evasion(h, images, "black-box", budget, seed, cb), h, budget)}
        col = None
        if h.name in WHITEBOX_HASHERS:
            ev["white-box"] = summarise(run_evasion(h, images, "white-box", budget, seed, cb), h, budget)
            col = summarise_collisions(run_collisions(h, n, "white-box", budget, seed, progress=cb), h, budget)
        profiles, ms = run_profile(names, h, ev, col, seed, progress=cb)
    run_id = _store(db, ms, "attack profile", {"hasher": h.name, "n": n, "budget": budget, "schemes": names}, seed)
    wide: dict[str, dict] = {}
    for m in ms:
        r = wide.setdefault(m.scheme, {"scheme": m.scheme})
        key = m.metric + (f"[{m.params['mode']}]" if "mode" in m.params else "")
        r[key] = m.text if m.value is None else round(float(m.value), 3)
    echo(render(pd.DataFrame(list(wide.values())), fmt, title=f"security profile ({h.name}, run {run_id})",
                records={"run_id": run_id, "schemes": list(wide.values())}))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.add_typer(attack_app, name="attack")
