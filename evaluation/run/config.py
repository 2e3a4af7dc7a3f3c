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


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {p.name} is not valid TOML: {e}") from None
    return config_from_dict(raw, p.name)


def config_from_dict(raw: dict[str, Any], where: str = "config") -> RunConfig:
    for k in raw:
        if k not in ("run", "workload", "schemes", "hard_negatives"):
            raise ConfigError(f"{where}: unknown section [{k}] (known: run, workload, hard_negatives, schemes)")
    run = dict(raw.get("run", {}))
    for k in run:
        if k not in RUN_KEYS:
            raise ConfigError(f"{where}: unknown key run.{k} (known: {', '.join(sorted(RUN_KEYS))})")
    types = {"corpus": str, "image_size": int, "hasher": str, "n_known": int, "n_benign": int,
             "seed": int, "threshold": (str, int), "schemes": list, "profile": str}
    for k, v in run.items():
        if not isinstance(v, types[k]) or isinstance(v, bool):
            raise ConfigError(f"{where}: run.{k} has the wrong type ({type(v).__name__})")
    if "threshold" in run:
        run["threshold"] = str(run["threshold"])
    for k in ("n_known", "n_benign", "image_size"):
        if k in run and run[k] < 1:
            raise ConfigError(f"{where}: run.{k} must be positive")
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
    if not isinstance(schemes, dict) or any(not isinstance(v, dict) for v in schemes.values()):
        raise ConfigError(f"{where}: [schemes.NAME] sections must hold parameter tables")
    return RunConfig(**run, workload=workload, scheme_params=schemes, hard_negatives=hard)
