"""CLI contract: results in every format, and one clear line + exit 2 for every bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from e2eebench.evaluation.cli.app import main


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def photo_file(tmp_path):
    from e2eebench.evaluation.data.corpora import get_corpus
    p = tmp_path / "photo.png"
    get_corpus("bundled").items(1)[0].image.save(p)
    return p


def test_hash_pdq_matches_reference(photo_file, capsys):
    import pdqhash
    code, out, err = run_cli(["hash", "--hasher", "pdq", "--format", "json", str(photo_file)], capsys)
    assert code == 0, err
    rows = json.loads(out)
    bits, q = pdqhash.compute(np.asarray(Image.open(photo_file).convert("RGB")))
    assert rows[0]["hash"] == "%064x" % int("".join(map(str, bits)), 2)
    assert rows[0]["quality"] == q


@pytest.mark.parametrize("args, needle", [
    (["run", "--quick", "--schemes", "no-such-scheme"], "unknown scheme"),
    (["run", "--quick", "--hasher", "nohash"], "unknown hasher"),
    (["run", "--quick", "--corpus", "nocorpus"], "unknown corpus"),
    (["run", "--quick", "--corpus", "folder:/definitely/not/here"], "folder"),
    (["run", "--quick", "--seed", "abc"], "seed"),
    (["run", "--quick", "--format", "xml"], "format"),
    (["hash", "--hasher", "pdq", "/no/such/image.png"], "image not found"),
    (["hash", "--hasher", "bogus", "x.png"], "unknown hasher"),
    (["list", "everything"], "cannot list"),
    (["run"], "--quick"),
    (["run", "--quick", "--list-size", "3"], "run.list_size must be an integer in 40"),
    (["run", "--quick", "--list-size", "0"], "list-size"),
])
def test_bad_input_one_line_exit_2_nothing_written(args, needle, capsys, tmp_path):
    db = tmp_path / "r.duckdb"
    code, out, err = run_cli(args + (["--db", str(db)] if args[0] == "run" else []), capsys)
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0].lower() or needle in lines[0]
    assert "Traceback" not in err
    assert not db.exists()


def test_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    code, out, err = run_cli(["hash", str(bad)], capsys)
    assert code == 2 and "cannot read image" in err and out == ""


def test_bad_transform_in_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nn_known = "many"\n')
    code, _, err = run_cli(["run", "--config", str(cfg), "--db", str(tmp_path / "x.duckdb")], capsys)
    assert code == 2 and "run.n_known" in err
    cfg.write_text('[run]\nbogus = 1\n')
    code, _, err = run_cli(["run", "--config", str(cfg), "--db", str(tmp_path / "x.duckdb")], capsys)
    assert code == 2 and "run.bogus" in err
    cfg.write_text('[run\n')
    code, _, err = run_cli(["run", "--config", str(cfg), "--db", str(tmp_path / "x.duckdb")], capsys)
    assert code == 2 and "TOML" in err


def test_list_formats(capsys):
    for what in ("schemes", "hashers", "corpora", "transforms"):
        code, out, err = run_cli(["list", what, "--format", "json"], capsys)
        assert code == 0, err
        assert json.loads(out)


def test_installed_entry_point_no_traceback(tmp_path):
    exe = Path(sys.executable).with_name("e2eebench")
    if not exe.exists():
        pytest.skip("console script not installed next to this interpreter")
    r = subprocess.run([str(exe), "run", "--quick", "--schemes", "nope", "--db", str(tmp_path / "d.duckdb")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown scheme" in r.stderr
