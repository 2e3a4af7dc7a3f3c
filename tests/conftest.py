import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def quick_result(tmp_path_factory):
    """One quick comparison over every registered scheme, shared by the end-to-end tests."""
    from e2eebench.evaluation.api import quick_config, run
    db = tmp_path_factory.mktemp("store") / "quick.duckdb"
    return run(quick_config(), db=str(db))
