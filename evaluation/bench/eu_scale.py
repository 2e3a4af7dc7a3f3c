"""What a scheme's measured per-image cost would mean at EU scale (modelled, labelled so).

Takes the run's measured provider CPU per image and detection bytes per image and multiplies
them by a daily image volume. The volume is an assumption, not a measurement: the default,
1e9 images a day, is a round number for EU-wide messaging, chosen to be changed
(``E2EEBENCH_IMAGES_PER_DAY``). Every row says which volume it used and is labelled
``modelled``; the interval carries the measured interval of the per-image cost through.
"""
from __future__ import annotations

import os

import numpy as np

from e2eebench.evaluation.run.runner import RunData, SchemeRun
from e2eebench.evaluation.run.stats import mean_ci
from e2eebench.evaluation.run.store import Measurement
from e2eebench.protocols.errors import ConfigError

DEFAULT_IMAGES_PER_DAY = 1e9
SECONDS_PER_DAY = 86_400.0


def images_per_day() -> float:
    raw = os.environ.get("E2EEBENCH_IMAGES_PER_DAY", "")
    if not raw:
        return DEFAULT_IMAGES_PER_DAY
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"E2EEBENCH_IMAGES_PER_DAY must be a number, got {raw!r}") from None
    if v <= 0:
        raise ConfigError("E2EEBENCH_IMAGES_PER_DAY must be positive")
    return v


def _scaled(est, factor: float):
    lo = None if est.ci_low is None else est.ci_low * factor
    hi = None if est.ci_high is None else est.ci_high * factor
    return est.value * factor, lo, hi


def eu_scale(run: SchemeRun, data: RunData) -> list[Measurement]:
    im = [o for o in run.outcomes if o.has_image]
    if not im:
        return []
    volume = images_per_day()
    p = {"images_per_day": volume, "volume": "assumption (E2EEBENCH_IMAGES_PER_DAY)",
         "hasher": data.hasher.name, "list_size": run.list_size}
    server = mean_ci([o.server_s for o in im])
    device = mean_ci([o.device_s for o in im])
    up = mean_ci([o.detection_bytes_up for o in im])
    # one core busy all day does SECONDS_PER_DAY seconds of CPU
    cores = _scaled(server, volume / SECONDS_PER_DAY)
    device_h = _scaled(device, volume / 3600.0)
    tb = _scaled(up, volume / 1e12)
    return [
        Measurement(run.name, "eu_scale_provider_cores", cores[0], "cores", server.n, cores[1], cores[2],
                    params=p, label="modelled",
                    text="server CPU per image (measured) x images per day (assumed) / 86,400 s"),
        Measurement(run.name, "eu_scale_device_cpu_hours_per_day", device_h[0], "CPU hours", device.n,
                    device_h[1], device_h[2], params=p, label="modelled",
                    text="device CPU per image (measured) x images per day (assumed), summed over all devices"),
        Measurement(run.name, "eu_scale_detection_upload_tb_per_day", tb[0], "TB", up.n, tb[1], tb[2],
                    params=p, label="modelled",
                    text="detection bytes per image (measured) x images per day (assumed)"),
    ]
