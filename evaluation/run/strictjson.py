"""Strict JSON for every ``--format json``: no ``NaN`` or ``Infinity`` (RFC 8259 has neither).

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which ``JSON.parse`` and other
strict readers reject. :func:`dumps` turns every non-finite number into ``null`` and records
why beside it, in a ``null_reasons`` field of the enclosing object (``{key: reason}``), so a
reader knows a null is "undefined" or "infinite" and not "missing".
"""
from __future__ import annotations

import json
import math
from typing import Any

NULL_REASONS = "null_reasons"
WHY_NAN = "not a number: undefined (e.g. a rate or mean over n = 0)"
WHY_POS_INF = "+infinity (e.g. the PSNR of an unchanged image, or a ratio over zero)"
WHY_NEG_INF = "-infinity"


def _why(x: float) -> str:
    return WHY_NAN if math.isnan(x) else WHY_POS_INF if x > 0 else WHY_NEG_INF


def _scalar(v: Any) -> Any:
    """numpy / pandas scalars to Python; pandas' missing markers to None."""
    if v is None:
        return None
    try:
        import pandas as pd
        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if hasattr(v, "item") and not isinstance(v, (list, dict, tuple)) and getattr(v, "ndim", 0) == 0:
        try:
            return v.item()
        except (TypeError, ValueError):
            return v
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        return v.tolist()
    return v


def strict(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by None (reasons recorded)."""
    obj = _scalar(obj)
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        reasons: dict[str, str] = {}
        for k, v in obj.items():
            v = _scalar(v)
            key = k if isinstance(k, (str, int, float, bool)) or k is None else str(k)
            if isinstance(v, float) and not math.isfinite(v):
                reasons[str(key)] = _why(v)
                out[key] = None
            elif isinstance(v, (list, tuple)) and any(isinstance(_scalar(x), float) and not math.isfinite(_scalar(x))
                                                     for x in v):
                bad = [i for i, x in enumerate(v) if isinstance(_scalar(x), float) and not math.isfinite(_scalar(x))]
                reasons[str(key)] = f"items {bad}: " + _why(float(_scalar(v[bad[0]])))
                out[key] = strict(list(v))
            else:
                out[key] = strict(v)
        if reasons:
            prev = out.get(NULL_REASONS)
            out[NULL_REASONS] = (prev if isinstance(prev, dict) else {}) | reasons
        return out
    if isinstance(obj, (list, tuple)):
        return [strict(x) for x in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(obj)``; refuses any non-finite number that slipped through."""
    kw.setdefault("default", str)
    return json.dumps(strict(obj), allow_nan=False, **kw)


def loads_strict(text: str) -> Any:
    """Parse like a strict reader (``JSON.parse``): ``NaN`` / ``Infinity`` are errors."""
    def refuse(c: str) -> Any:
        raise ValueError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=refuse)
