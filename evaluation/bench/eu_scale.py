"""What detection would add at EU scale: measured per-image cost minus the no-detection control
row, times an assumed daily volume — modelled, and labelled so.

Three inputs, each named in every row's text and parameters:

- **per-image cost** (measured, this run): CPU of the non-device parties (``server_ms``), of the
  device (``client_ms``), device upload (``bytes_up``) and bytes on every leg (``bytes_total``),
  at the run's list size;
- **what E2EE itself costs** (measured, this run): the same metrics of ``e2ee-no-detection``,
  subtracted, so a row shows what detection adds and not the cost of messaging;
- **volume and list size** (assumed): images per day, 1e9 by default, a round number for
  EU-wide messaging (``E2EEBENCH_IMAGES_PER_DAY``), and the deployed list size, 10^6 by default
  (``E2EEBENCH_DEPLOYED_LIST_SIZE``). Hotline lists are not published; the design spans 10^5 to
  10^7 entries and Meta's Hasher-Matcher-Actioner sizes its matcher for 10^7 hashes (REFERENCES.md),
  so 10^6 is an assumed middle, not a cited figure.

A run at a list size below the deployed one gives a *lower bound* wherever cost grows with the
list; its rows say so (``at_deployed_list_size``: false). Run ``e2eebench run --list-size N`` at
the deployed size for the figure itself. Intervals: the two measured intervals combined in
quadrature (independent samples), then scaled.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

from e2eebench.evaluation.run.store import Measurement
from e2eebench.protocols.errors import ConfigError

DEFAULT_IMAGES_PER_DAY = 1e9
DEFAULT_DEPLOYED_LIST_SIZE = 1_000_000
SECONDS_PER_DAY = 86_400.0
BASELINE = "e2ee-no-detection"
VOLUME_SOURCE = "assumed: a round number for EU-wide messaging (E2EEBENCH_IMAGES_PER_DAY)"
LIST_SOURCE = ("assumed: hotline lists are unpublished; middle of the design's 10^5-10^7 range, Meta's HMA "
               "sizes its matcher for 10^7 hashes (REFERENCES.md) (E2EEBENCH_DEPLOYED_LIST_SIZE)")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive number")
    return v


def images_per_day() -> float:
    return _env_number("E2EEBENCH_IMAGES_PER_DAY", DEFAULT_IMAGES_PER_DAY)


def deployed_list_size() -> int:
    return int(_env_number("E2EEBENCH_DEPLOYED_LIST_SIZE", DEFAULT_DEPLOYED_LIST_SIZE))


# (output metric, input metric, scale from the input's unit per image to the output's per day, unit, what)
ROWS = (
    ("eu_scale_provider_cores", "server_ms", 1e-3 / SECONDS_PER_DAY, "cores",
     "CPU of every non-device party per image"),
    ("eu_scale_device_cpu_hours_per_day", "client_ms", 1e-3 / 3600.0, "CPU hours",
     "device CPU per image, summed over all devices"),
    ("eu_scale_detection_upload_tb_per_day", "bytes_up", 1e-12, "TB",
     "device upload per image"),
    ("eu_scale_traffic_tb_per_day", "bytes_total", 1e-12, "TB",
     "bytes on every leg per image (device, provider, servers, dealer, escrow, recipient)"),
)


def _cost_rows(ms: Sequence[Measurement]) -> dict[tuple[str, str], Measurement]:
    return {(m.scheme, m.metric): m for m in ms
            if m.metric in {r[1] for r in ROWS} and "slice" not in m.params and "party" not in m.params}


def _half(m: Measurement) -> float:
    if m.ci_low is None or m.ci_high is None:
        return 0.0
    return (m.ci_high - m.ci_low) / 2


def eu_scale_rows(ms: Sequence[Measurement]) -> list[Measurement]:
    """EU-scale rows for every scheme of a run but the baseline, from the run's own measurements."""
    volume, deployed = images_per_day(), deployed_list_size()
    cost = _cost_rows(ms)
    schemes = list(dict.fromkeys(m.scheme for m in ms if m.scheme != BASELINE))
    out = []
    for s in schemes:
        for metric, source, scale, unit, what in ROWS:
            a = cost.get((s, source))
            if a is None or a.value is None or (isinstance(a.value, float) and math.isnan(a.value)):
                continue
            listed = int(a.params.get("list_size", 0))
            p = {"images_per_day": volume, "volume": VOLUME_SOURCE, "deployed_list_size": deployed,
                 "deployed_list_size_source": LIST_SOURCE, "cost_list_size": listed,
                 "at_deployed_list_size": listed == deployed, "baseline": BASELINE,
                 "hasher": a.params.get("hasher")}
            b = cost.get((BASELINE, source))
            if b is None or b.value is None:
                out.append(Measurement(s, metric, None, unit, a.n, params=p, label="modelled",
                                       text=f"not computed: no {BASELINE} row in this run to subtract "
                                            f"(add {BASELINE} to --schemes)"))
                continue
            f = volume * scale
            d = (a.value - b.value) * f
            h = math.hypot(_half(a), _half(b)) * f
            size = (f"at the deployed list size {deployed:,}" if listed == deployed else
                    f"LOWER BOUND where cost grows with the list: cost measured at {listed:,} entries, "
                    f"the deployed list holds {deployed:,}" if listed < deployed else
                    f"UPPER BOUND where cost grows with the list: cost measured at {listed:,} entries, "
                    f"above the deployed {deployed:,}")
            text = (f"{what}: {a.value:.4g} {a.unit} ({source}, measured, this run, n={a.n}) minus {BASELINE}'s "
                    f"{b.value:.4g} {b.unit} (measured, this run, n={b.n}) x {volume:.3g} images per day "
                    f"({VOLUME_SOURCE}); {size} ({LIST_SOURCE})")
            out.append(Measurement(s, metric, d, unit, min(a.n, b.n), d - h if h else None, d + h if h else None,
                                   params=p, label="modelled", text=text))
    return out
