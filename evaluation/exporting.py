"""Exports of stored runs; files are written atomically (temp file, then rename)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from e2eebench.protocols.errors import ConfigError
from e2eebench.evaluation.store import ResultStore

EXPORT_FORMATS = ("md", "csv", "json")


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


def export_run(db: str, run: str, fmt: str) -> str:
    from e2eebench.evaluation.output import render, summary_wide
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    with ResultStore(db) as store:
        run_id = store.resolve(run)
        df = store.measurements(run_id)
        info = store.run_info(run_id)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps({"run": info, "measurements": json.loads(df.to_json(orient="records"))},
                          indent=2, default=str)
    prov = (f"\n\nRun `{run_id}` · commit `{info['commit']}` · seed {info['seed']} · "
            f"created {info['created']}")
    return render(summary_wide(df), "md", title=f"e2eebench run {run_id}") + prov + "\n"
