import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def quick_db(tmp_path_factory):
    """One quick comparison (embedded default profile) of three schemes, run through the CLI."""
    from e2eebench.evaluation.cli.app import main
    db = tmp_path_factory.mktemp("store") / "quick.duckdb"
    code = main(["run", "--quick", "--schemes", "server-side,e2ee-no-detection,on-device-list,psi-ad", "--db", str(db),
                 "--format", "csv"])
    assert code == 0
    return db


def pytest_collection_modifyitems(config, items):
    """The full fuzzing profile runs only when asked for (``-m fuzz``)."""
    expr = config.getoption("-m") or ""
    if "fuzz" in expr and "not fuzz" not in expr:
        return
    skip = pytest.mark.skip(reason="full fuzzing profile: run with -m fuzz")
    for item in items:
        if "fuzz" in item.keywords:
            item.add_marker(skip)
