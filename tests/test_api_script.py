"""The Python API from a plain script: at its top level, with no ``if __name__ == "__main__":``
guard, worker processes would re-run the script (BrokenProcessPool); the harness detects it,
works in one process and says so in one line."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

TINY = textwrap.dedent("""
    from e2eebench.evaluation.api import quick_config, run
    from e2eebench.evaluation.data.workload import WorkloadConfig
    cfg = quick_config(schemes=["server-side", "on-device-list"], n_known=4, n_benign=6, image_size=64,
                       workload=WorkloadConfig(n_accounts=3, days=1))
    r = run(cfg, db=":memory:")
    print("ROWS", len(r.summary()))
""")

QUICK = textwrap.dedent("""
    from e2eebench.evaluation.api import quick_config, run
    r = run(quick_config(), db=":memory:")
    print("ROWS", len(r.summary()))
""")


def _script(tmp_path, text):
    p = tmp_path / "analysis.py"
    p.write_text(text)
    return subprocess.run([sys.executable, str(p)], capture_output=True, text=True, timeout=900, cwd=tmp_path)


def test_unguarded_script_runs_and_says_so_in_one_line(tmp_path):
    r = _script(tmp_path, TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ROWS 2" in r.stdout and r.stdout.count("ROWS") == 1   # the script ran once, not per child
    notes = [x for x in r.stderr.splitlines() if "__main__" in x]
    assert len(notes) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_unguarded_script_runs_the_quick_comparison(tmp_path):
    from e2eebench.protocols.registry import SCHEMES
    r = _script(tmp_path, QUICK)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"ROWS {len(SCHEMES)}" in r.stdout


def test_guard_detection(tmp_path):
    probe = textwrap.dedent("""
        from e2eebench.evaluation.data.processes import unguarded_main_call
        def ask():
            return unguarded_main_call()
        print("top", ask())
        if __name__ == "__main__":
            print("guarded", ask())
    """)
    r = _script(tmp_path, probe)
    assert r.returncode == 0, r.stderr
    assert "top True" in r.stdout and "guarded False" in r.stdout
