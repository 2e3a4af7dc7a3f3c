"""A study: the comparison run and the runs that fill the rest of the assessment, started by one command.

``e2eebench report --study FILE --out DIR`` reads a study TOML, runs its comparison and each of
its steps (the accuracy benchmark, attack runs, scale benchmarks) into one results database,
and assesses the comparison joined with every step's run, so each cell of the table names the
run it came from. A step is a command line of e2eebench itself, so a step stores exactly what
the command stores when a user types it, and the study file reads like the experiment:

    [study]
    comparison = ["run", "--profile", "standard"]

    [[study.steps]]
    name = "attacks"
    args = ["attack", "profile", "--n", "200"]

Steps resume: a step whose command line and code version (``run.sweep.code_version``, the same
digest of the source a sweep's cells are keyed by) have a stored run in the database is not run again, so a study that stopped is restarted with the same command. Only steps whose
command stores into ``--db`` can be steps; that is checked before any work.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable

from e2eebench.protocols.errors import ConfigError, E2EEBenchError, InputError

STUDY_KEYS = {"comparison", "steps", "description"}
STEP_KEYS = {"name", "args"}
# ``app`` below is the Typer application (``cli.app.app``), handed in by the report command
# so that this module does not import the module that imports it.
# options the study sets itself on every step
RESERVED = ("--db",)

SCHEMA = """
CREATE TABLE IF NOT EXISTS study_steps (
    step_key VARCHAR PRIMARY KEY, study VARCHAR, name VARCHAR, args VARCHAR, run_id VARCHAR,
    commit VARCHAR, seconds DOUBLE, created VARCHAR);
"""


class StudyError(E2EEBenchError):
    """A step of a study failed; the steps before it are stored and are not rerun on restart."""


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    path: Path
    comparison: Step
    steps: tuple[Step, ...]
    description: str = ""

    @property
    def all_steps(self) -> tuple[Step, ...]:
        return (self.comparison, *self.steps)


@dataclass
class StudyResult:
    comparison_run: str
    step_runs: dict[str, str] = field(default_factory=dict)   # step name -> run id
    reused: list[str] = field(default_factory=list)           # step names found stored
    outputs: dict[str, Path] = field(default_factory=dict)    # step name -> its printed output


def builtin_study(name: str) -> Path:
    p = resources.files("e2eebench.evaluation") / "configs" / f"study-{name}.toml"
    if not p.is_file():
        raise ConfigError(f"no built-in study {name!r} (built in: quick, standard; or give a FILE)")
    return Path(str(p))


def _args(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise ConfigError(f"{where}: must be a non-empty list of command-line words, e.g. [\"run\", \"--quick\"]")
    for a in value:
        if a.split("=", 1)[0] in RESERVED:
            raise ConfigError(f"{where}: {a.split('=', 1)[0]} is set by the study (one database for every step)")
    return tuple(value)


def load_study(spec: str | Path, app) -> Study:
    """A study from a TOML file, or a built-in study by name ('quick', 'standard'); every step checked."""
    p = Path(spec)
    if not p.exists() and not str(spec).endswith(".toml") and "/" not in str(spec):
        p = builtin_study(str(spec))
    try:
        raw = tomllib.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"study file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"study path is a folder: {p}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"study file {p} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"study file {p} is not valid TOML: {e}") from None
    if set(raw) != {"study"} or not isinstance(raw["study"], dict):
        raise ConfigError(f"study file {p} must hold one [study] table (found: {', '.join(sorted(raw)) or 'nothing'})")
    s = raw["study"]
    unknown = set(s) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) in [study]: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(STUDY_KEYS))})")
    if "comparison" not in s:
        raise ConfigError("[study] needs comparison = [\"run\", ...] (the comparison run the table rates)")
    comparison = Step("comparison", _args(s["comparison"], "[study].comparison"))
    if comparison.args[0] != "run":
        raise ConfigError(f"[study].comparison must be an 'e2eebench run' command line, got {comparison.args[0]!r}")
    steps_raw = s.get("steps", [])
    if not isinstance(steps_raw, list):
        raise ConfigError("[study].steps must be an array of [[study.steps]] tables")
    steps, names = [], {"comparison"}
    for i, st in enumerate(steps_raw, 1):
        where = f"[[study.steps]] #{i}"
        if not isinstance(st, dict):
            raise ConfigError(f"{where}: must be a table with name and args")
        bad = set(st) - STEP_KEYS
        if bad or set(st) != STEP_KEYS:
            raise ConfigError(f"{where}: needs exactly the keys name and args (got {', '.join(sorted(st)) or 'none'})")
        name = st["name"]
        if not isinstance(name, str) or not name.strip() or name in names:
            raise ConfigError(f"{where}: name must be a non-empty string not used by another step, got {name!r}")
        names.add(name)
        steps.append(Step(name, _args(st["args"], f"{where} ({name}).args")))
    desc = s.get("description", "")
    if not isinstance(desc, str):
        raise ConfigError("[study].description must be a string")
    study = Study(p, comparison, tuple(steps), desc)
    for step in study.all_steps:
        _check_command(app, step)
    return study


def _command(app, args: tuple[str, ...]):
    """The click command a command line of ``app`` names, and the words that name it."""
    import typer
    cmd = typer.main.get_command(app)
    path: list[str] = []
    for word in args:  # groups are told by their verbs: Typer may bring its own copy of click
        if not hasattr(cmd, "get_command") or word.startswith("-"):
            break
        ctx = cmd.context_class(cmd)
        sub = cmd.get_command(ctx, word)
        if sub is None:
            known = ", ".join(sorted(cmd.list_commands(ctx)))
            raise ConfigError(f"unknown command {' '.join([*path, word])!r} (known: {known})")
        cmd, path = sub, [*path, word]
    return cmd, path


def _check_command(app, step: Step) -> None:
    cmd, path = _command(app, step.args)
    if not path or path[0] in ("report", "sweep"):
        raise ConfigError(f"step {step.name}: {' '.join(path) or step.args[0]!r} cannot be a study step")
    if not any("--db" in p.opts for p in cmd.params):
        raise ConfigError(f"step {step.name}: 'e2eebench {' '.join(path)}' stores nothing in a results "
                          "database (no --db option), so it cannot fill the assessment")


def step_key(study: Study, step: Step, commit: str) -> str:
    """What decides that a stored step can be reused: its command line and the code version."""
    blob = json.dumps({"args": list(step.args), "commit": commit}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _stored(db: str, key: str) -> str | None:
    from e2eebench.evaluation.run.store import ResultStore
    with ResultStore(db) as st:
        st.con.execute(SCHEMA)
        r = st.con.execute("SELECT s.run_id FROM study_steps s JOIN runs r USING (run_id) WHERE s.step_key = ?",
                           [key]).fetchone()
    return r[0] if r else None


def _run_ids(db: str) -> set[str]:
    from e2eebench.evaluation.run.store import ResultStore
    with ResultStore(db) as st:
        return set(st.runs().run_id)


def _record(db: str, key: str, study: Study, step: Step, run_id: str, commit: str, seconds: float) -> None:
    from e2eebench.evaluation.run.store import ResultStore
    with ResultStore(db) as st:
        st.con.execute(SCHEMA)
        st.con.execute("INSERT OR REPLACE INTO study_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            key, study.path.name, step.name, json.dumps(list(step.args)), run_id, commit, seconds,
            datetime.now(timezone.utc).isoformat(timespec="seconds")])


def _invoke(app, args: list[str]) -> str:
    """Run one command line of ``app`` in this process; its printed output is returned."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            rv = app(args=args, standalone_mode=False, prog_name="e2eebench")
        except E2EEBenchError:
            raise
        except Exception as e:  # click usage errors and the like: one line, typed
            if hasattr(e, "format_message"):
                raise ConfigError(" ".join(e.format_message().split())) from None
            raise
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        raise StudyError(f"exited with code {rv}")
    return buf.getvalue()


def run_study(app, study: Study, db: str | Path, out_dir: Path,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> StudyResult:
    """Run (or reuse) the comparison and every step; each step's printed output goes to OUT/steps/."""
    import time
    from e2eebench.evaluation.run.store import ResultStore
    from e2eebench.evaluation.run.sweep import code_version
    db = ResultStore.check_path(db)
    commit = code_version()   # stored in the ``commit`` column: the code that ran the step
    steps_dir = out_dir / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, str] = {}
    res = StudyResult("")
    total = len(study.all_steps)
    for i, step in enumerate(study.all_steps, 1):
        key = step_key(study, step, commit)
        stored = _stored(db, key)
        if stored is not None:
            runs[step.name] = stored
            res.reused.append(step.name)
            log(f"study: step {i}/{total} {step.name}: stored run {stored} reused")
            continue
        log(f"study: step {i}/{total} {step.name}: e2eebench {' '.join(step.args)}")
        before = _run_ids(db)
        t0 = time.perf_counter()
        try:
            text = _invoke(app, [*step.args, "--db", db])
        except E2EEBenchError as e:
            raise StudyError(f"step {step.name} ({' '.join(step.args)}) failed: {e}; "
                             f"{i - 1} step(s) before it are stored and are reused on restart") from None
        new = sorted(_run_ids(db) - before)
        if len(new) != 1:
            raise StudyError(f"step {step.name} stored {len(new)} runs, expected 1")
        runs[step.name] = new[0]
        out = steps_dir / f"{i:02d}-{step.name}.txt"
        out.write_text(text)
        res.outputs[step.name] = out
        _record(db, key, study, step, new[0], commit, time.perf_counter() - t0)
    res.comparison_run = runs.pop("comparison")
    res.step_runs = runs
    return res
