"""Whether worker processes may be started from here, and what to do when they may not.

Worker processes started by ``spawn`` or ``forkserver`` (the process pools of the hashing
benchmark and calibration, a Dask ``LocalCluster``) re-import the main script. A script that
calls the API at its top level, outside an ``if __name__ == "__main__":`` block, would run
again in every child, which Python refuses (``BrokenProcessPool`` in the parent). Rather than
fail, the harness detects that case, works in one process and says so in one line.
"""
from __future__ import annotations

import ast
import multiprocessing
import sys
from functools import lru_cache

ADVICE = ('called at a script\'s top level without `if __name__ == "__main__":`; {what} in this '
          'process (put the call under that guard to use worker processes)')
_told: set[str] = set()


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


@lru_cache(maxsize=8)
def _guarded_lines(path: str) -> tuple[tuple[int, int], ...] | None:
    """Line ranges of the ``if __name__ == "__main__":`` bodies of a script (None: unreadable)."""
    try:
        import tokenize
        with tokenize.open(path) as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    return tuple((n.body[0].lineno, n.end_lineno or n.body[-1].lineno) for n in ast.walk(tree)
                 if isinstance(n, ast.If) and _is_main_guard(n.test))


def unguarded_main_call() -> bool:
    """True if this call comes from a main script's top-level code outside its main guard (so a
    spawned child would run that code again)."""
    if multiprocessing.get_start_method(allow_none=True) == "fork" and sys.platform != "darwin":
        return False
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return False    # interactive, a notebook kernel or ``python -c``: nothing is re-run
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        return False    # ``python -m package``: multiprocessing does not re-run a package's __main__
    f = sys._getframe(1)
    while f is not None:
        if f.f_globals is main.__dict__ and f.f_code.co_name == "<module>":
            ranges = _guarded_lines(path)
            return ranges is not None and not any(a <= f.f_lineno <= b for a, b in ranges)
        f = f.f_back
    return False


def pool_usable(what: str) -> bool:
    """Whether worker processes can be started; if not, say once (one line on stderr) what
    runs in-process instead and how to get the workers back."""
    if multiprocessing.current_process().daemon:
        return False    # a daemonic process (a Dask worker, a pool's child) may not start children
    if unguarded_main_call():
        if what not in _told:
            _told.add(what)
            print("e2eebench: note: " + ADVICE.format(what=what), file=sys.stderr)
        return False
    return True
