"""TOML run configurations, validated on load with errors that name the key."""
from __future__ import annotations

import tomllib
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from e2eebench.protocols.errors import ConfigError, InputError
from e2eebench.evaluation.run.runner import RunConfig
from e2eebench.evaluation.data.workload import WorkloadConfig

RUN_KEYS = {f.name for f in fields(RunConfig)} - {"workload", "scheme_params", "hard_negatives"}


def builtin_config(name: str) -> Path:
    p = resources.files("e2eebench.evaluation") / "configs" / f"{name}.toml"
    if not p.is_file():
        raise ConfigError(f"no built-in config {name!r}")
    return Path(str(p))


# Profiles a config may name: "quick" and "conformance" run the expensive schemes (HE) on a
# seeded sample of image messages; "full" runs every message through every scheme.
PROFILES = ("quick", "conformance", "standard", "full")
# Bounds that keep a typo from becoming a run that never ends: every item is rendered and
# hashed, and every message runs through every scheme (larger lists: synthetic padding).
MAX_ITEMS = 1_000_000
MAX_MESSAGES = 10_000_000
MAX_IMAGE_SIZE = 4096
MAX_SEED = 2**63 - 1       # the results store keeps seeds as signed 64-bit integers


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"config path is a folder, not a file: {p}") from None
    except OSError as e:
        raise InputError(f"cannot read config file {p}: {e.strerror or e.__class__.__name__}") from None
    return config_from_dict(toml_table(data, f"config {p.name}"), p.name)


def toml_table(data: bytes, what: str) -> dict[str, Any]:
    """The TOML table in a file's bytes; not UTF-8 or not TOML is a ConfigError."""
    try:
        return tomllib.loads(bytes(data).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} is not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} is not valid TOML: {e}") from None


def config_from_dict(raw: dict[str, Any], where: str = "config") -> RunConfig:
    for k in raw:
        if k not in ("run", "workload", "schemes", "hard_negatives"):
            raise ConfigError(f"{where}: unknown section [{k}] (known: run, workload, hard_negatives, schemes)")
    for k in ("run", "workload", "schemes", "hard_negatives"):
        if k in raw and not isinstance(raw[k], dict):
            raise ConfigError(f"{where}: {k} must be a [{k}] table, got {type(raw[k]).__name__}")
    run = dict(raw.get("run", {}))
    for k in run:
        if k not in RUN_KEYS:
            raise ConfigError(f"{where}: unknown key run.{k} (known: {', '.join(sorted(RUN_KEYS))})")
    types = {"corpus": str, "image_size": int, "hasher": str, "n_known": int, "n_benign": int,
             "list_size": int, "seed": int, "threshold": (str, int), "schemes": list, "profile": str,
             "attack_images": int}
    for k, v in run.items():
        if not isinstance(v, types.get(k, object)) or isinstance(v, bool):
            raise ConfigError(f"{where}: run.{k} has the wrong type ({type(v).__name__})")
    if "threshold" in run:
        run["threshold"] = str(run["threshold"])
    for k in ("n_known", "n_benign", "image_size", "list_size", "attack_images"):
        if k in run and run[k] < 1:
            raise ConfigError(f"{where}: run.{k} must be positive")
    if "schemes" in run:
        if not run["schemes"]:
            raise ConfigError(f"{where}: run.schemes is empty (leave it out to run every scheme)")
        bad = [x for x in run["schemes"] if not isinstance(x, str)]
        if bad:
            raise ConfigError(f"{where}: run.schemes must hold scheme names, got {bad[0]!r}")
    wl = raw.get("workload", {})
    try:
        workload = WorkloadConfig.from_dict(wl)
    except TypeError as e:
        raise ConfigError(f"{where}: workload: {e}") from None
    from e2eebench.evaluation.data.hard_negatives import HardNegativeConfig
    try:
        hard = HardNegativeConfig.from_dict(raw.get("hard_negatives", {}))
    except TypeError as e:
        raise ConfigError(f"{where}: hard_negatives: {e}") from None
    schemes = raw.get("schemes", {})
    if any(not isinstance(v, dict) for v in schemes.values()):
        raise ConfigError(f"{where}: [schemes.NAME] sections must hold parameter tables")
    cfg = RunConfig(**run, workload=workload, scheme_params=schemes, hard_negatives=hard)
    check_config(cfg, where)
    return cfg


def check_config(cfg: RunConfig, where: str = "config") -> RunConfig:
    """Refuse, naming the key, what would fail later (or never finish): run before any work."""
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.protocols.registry import scheme_class

    def need_int(key: str, v: Any, lo: int, hi: int) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{where}: {key} must be an integer in {lo}..{hi:,}, got {v!r}")

    need_int("run.seed", cfg.seed, 0, MAX_SEED)
    need_int("run.image_size", cfg.image_size, 16, MAX_IMAGE_SIZE)
    need_int("run.n_known", cfg.n_known, 1, MAX_ITEMS)
    need_int("run.n_benign", cfg.n_benign, 3, MAX_ITEMS)   # the security probes take three benign images
    if cfg.n_known + cfg.n_benign > MAX_ITEMS:
        raise ConfigError(f"{where}: run.n_known + run.n_benign must be at most {MAX_ITEMS:,}")
    if getattr(cfg, "list_size", None) is not None:
        need_int("run.list_size", cfg.list_size, cfg.n_known, 10**9)
    if cfg.profile not in PROFILES:
        raise ConfigError(f"{where}: run.profile {cfg.profile!r} is unknown (known: {', '.join(PROFILES)})")
    if not isinstance(cfg.hasher, str):
        raise ConfigError(f"{where}: run.hasher must be a name, got {cfg.hasher!r}")
    hasher = get_hasher(cfg.hasher)
    t = cfg.threshold
    if t not in ("default", "calibrated"):
        try:
            tv = int(t)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: run.threshold must be 'default', 'calibrated' or an integer, "
                              f"got {t!r}") from None
        need_int("run.threshold", tv, 0, hasher.bits)
    for name in cfg.schemes:
        if not isinstance(name, str):
            raise ConfigError(f"{where}: run.schemes must hold scheme names, got {name!r}")
        scheme_class(name)
    for name, params in cfg.scheme_params.items():
        known = {p.name for p in scheme_class(name).params}
        for k in params:
            if k not in known:
                raise ConfigError(f"{where}: unknown parameter schemes.{name}.{k} "
                                  f"(known: {', '.join(sorted(known)) or 'none'})")
    w = cfg.workload
    expected = w.n_accounts * w.days * w.messages_per_account_per_day
    if expected > MAX_MESSAGES:
        raise ConfigError(f"{where}: the workload would send about {expected:,.0f} messages "
                          f"(n_accounts x days x messages_per_account_per_day); at most {MAX_MESSAGES:,}")
    return cfg
