"""Exports of stored runs; files are written atomically (temp file, then rename)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from e2eebench.protocols.errors import ConfigError

EXPORT_FORMATS = ("md", "csv", "json", "latex", "tex", "xlsx", "html")


def write_atomic(path: str | Path, data: str | bytes) -> None:
    p = Path(path)
    if not p.parent.exists():
        from e2eebench.protocols.errors import InputError
        raise InputError(f"folder does not exist: {p.parent}")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export_run(db: str, run: str, fmt: str, rubric: str | None = None) -> str | bytes:
    """The assessment table of a stored run in ``fmt`` (xlsx gives bytes, the rest text)."""
    from e2eebench.evaluation.assess.assessment import assess_run
    from e2eebench.evaluation.assess.formats import export_assessment
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    return export_assessment(assess_run(db, run, rubric), fmt)
