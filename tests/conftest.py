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
