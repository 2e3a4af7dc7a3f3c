"""Packaging and architecture: every code folder is a listed sub-package; layers hold."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("protocols", "clientside", "server", "evaluation")


def test_top_level_layout():
    for name in ("pyproject.toml", "README.md", "protocols", "clientside", "server", "notebooks",
                 "tests", "evaluation"):
        assert (ROOT / name).exists(), name


def test_every_package_folder_is_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    packages = set(cfg["packages"])
    for folder in CODE_FOLDERS:
        assert mapping.get(f"e2eebench.{folder}") == folder
        assert f"e2eebench.{folder}" in packages
    # any sub-folder with python code must be listed as its own sub-package
    for folder in CODE_FOLDERS:
        for sub in (ROOT / folder).rglob("*.py"):
            rel = sub.parent.relative_to(ROOT)
            if sub.parent.name == "__pycache__":
                continue
            pkg = "e2eebench." + ".".join(rel.parts)
            assert pkg in packages, f"{rel} holds code but {pkg} is not listed in pyproject"


def test_import_layers():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    r = subprocess.run([exe, str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_package_imports_the_harness():
    for folder in ("protocols", "clientside", "server"):
        for f in (ROOT / folder).rglob("*.py"):
            text = f.read_text()
            assert "e2eebench.evaluation" not in text, f"{f.name} imports the harness"


def test_every_module_below_the_harness_is_in_a_layer():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    listed = {m.strip() for layer in cfg["layers"] for m in layer.replace("|", ":").split(":")}
    for folder in ("protocols", "clientside", "server"):
        for f in (ROOT / folder).glob("*.py"):
            if f.name == "__init__.py":
                continue
            mod = f"e2eebench.{folder}.{f.stem}"
            assert mod in listed, f"{mod} is in no layer of the import contract"


STAGES = ["data", "run", "accuracy", "leakage", "attacks", "bench", "assess", "cli"]


def test_harness_is_stages_only():
    """No module sits at evaluation/'s top level except its __init__ and the API entry point."""
    top = {f.name for f in (ROOT / "evaluation").glob("*.py")}
    assert top == {"__init__.py", "api.py"}, sorted(top - {"__init__.py", "api.py"})
    subs = {d.name for d in (ROOT / "evaluation").iterdir() if d.is_dir() and any(d.glob("*.py"))}
    assert subs == set(STAGES)


def test_stage_contract_names_every_stage_in_order():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    stage = [c for c in contracts if c.get("containers") == ["e2eebench.evaluation"]]
    assert len(stage) == 1
    order = [name.strip() for layer in reversed(stage[0]["layers"]) for name in layer.split("|")]
    assert order == ["data", "run", "accuracy", "leakage", "attacks", "bench", "api", "assess", "cli"]


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle in a module graph, or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_harness():
    """No circle among evaluation's modules, lazy imports included (grimp reads every import
    statement; the CLI's command groups are imported statically so that they are seen too)."""
    import grimp
    graph = grimp.build_graph("e2eebench.evaluation")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycle(edges) is None, _cycle(edges)
