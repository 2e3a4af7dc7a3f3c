"""Round trip: every number in every export traces to a stored measurement.

Each export is parsed back from its own file format (markdown tables, HTML cells, LaTeX rows,
XLSX cells, CSV and JSON rows) and every number found in a figures cell is compared with the
stored measurement of that scheme and metric, read straight from the results store.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from e2eebench.evaluation.cli.app import main
from e2eebench.evaluation.assess.exporting import export_run
from e2eebench.evaluation.assess.rubric import load_rubric
from e2eebench.evaluation.run.store import Measurement, ResultStore

NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?|-?\.\d+")
ROWS = [  # a spread of magnitudes, units, a bool, a missing value with text, a modelled row
    Measurement("server-side", "recall", 0.9375, "rate", 16, 0.7167126, 0.98888, {"slice": "all"}),
    Measurement("server-side", "recall", 0.0, "rate", 1, 0.0, 0.79345, {"slice": "pad+jpeg"}),
    Measurement("server-side", "fpr", 0.0, "rate", 124, 0.0, 0.0300486),
    Measurement("server-side", "precision", None, "rate", 0, text="no detections: precision undefined"),
    Measurement("server-side", "client_ms", 0.0666706, "ms", 140, 0.0519092, 0.0814321, {"list_size": 40}),
    Measurement("server-side", "bytes_up", 133934.7, "bytes", 140, 131202.3, 136667.0, {"list_size": 40}),
    Measurement("server-side", "device_storage_bytes", 123456789.0, "bytes", 1, params={"list_size": 40}),
    Measurement("server-side", "setup_s", 1.6545e-05, "s", 1, params={"list_size": 40}),
    Measurement("server-side", "hash_visible_to_provider", 1.0, "bool", 39),
    Measurement("server-side", "provider_learns_per_benign_bits", 1074706.3, "bits", 124, 1054435.1, 1094978.2),
    Measurement("on-device-list", "recall", 0.75, "rate", 16, 0.505, 0.8982, {"slice": "all"}),
    Measurement("on-device-list", "fpr", 0.0080645, "rate", 124, 0.00142, 0.04417),
    Measurement("on-device-list", "server_ms", 2.7335, "ms", 140, 2.6739, 2.7932, {"list_size": 40}),
    Measurement("on-device-list", "rounds", 3.0, "flights", 140, 3.0, 3.0, {"list_size": 40}),
    Measurement("on-device-list", "hash_visible_to_provider", 0.0, "bool", 39),
    Measurement("on-device-list", "evasion_success_rate", 0.42, "rate", 50, 0.29, 0.56, label="modelled"),
    Measurement("on-device-list", "verdict_to", None, "party", 1, text="device", label="declared"),
]


@pytest.fixture()
def stored(tmp_path):
    db = tmp_path / "store.duckdb"
    with ResultStore(db) as s:
        rid = s.write_run(ROWS, command="test", config={"seed": 7}, seed=7)
        df = s.measurements(rid)
    return str(db), rid, df


def _overall(df, scheme, metric):
    d = df[(df.scheme == scheme) & (df.metric == metric)]
    d = d[d["params"].map(lambda p: json.loads(p).get("slice", "all") == "all")]
    return None if d.empty else d.iloc[0]


def _close(parsed: float, stored: float) -> bool:
    # 4 significant digits (half a unit in the 4th digit), or whole units when printed with separators
    tol = max(5e-4 * abs(stored), 0.5 if abs(stored) >= 1000 else 0.0) + 1e-12
    return abs(parsed - stored) <= tol


NOTES = (" \u2014 ", "inconclusive", "not rated", "does not apply", "shown")


def _split_note(text: str) -> tuple[str, str]:
    """A figures cell is the figure (value, interval, n, label) and then the rating's note."""
    cut = min([text.find(k) for k in NOTES if k in text] or [len(text)])
    return text[:cut], text[cut:]


def _check_cell(df, scheme: str, metric: str, text: str, rub=None) -> int:
    """Every number in a figures cell is the stored value, a bound, or n of that scheme/metric;
    the note says inconclusive exactly when the interval's two ends fall in different ratings."""
    row = _overall(df, scheme, metric)
    text, note = _split_note(text.strip())
    text = text.strip()
    rub = rub or load_rubric()
    if row is not None and not pd.isna(row["value"]) and row["label"] in rub.rated_labels:
        ends = _ends(rub, metric, row)
        assert ("inconclusive" in note) == (_grade(rub, metric, ends[0]) != _grade(rub, metric, ends[1])), \
            (scheme, metric, note)
    if row is not None and not pd.isna(row["value"]) and row["label"] not in rub.rated_labels:
        assert "not rated" in note, (scheme, metric, note)
    if row is None:
        assert "not measured" in text and not NUM.search(text.replace("not measured", "")), (scheme, metric, text)
        return 0
    stored = [row["value"], row["ci_low"], row["ci_high"], row["n"]]
    stored = [float(x) for x in stored if x is not None and not pd.isna(x)]
    nums = [float(t.replace(",", "")) for t in NUM.findall(text)]
    if row["unit"] == "bool":
        assert text.split()[0] == ("yes" if row["value"] else "no")
    for x in nums:
        assert any(_close(x, s) for s in stored), (scheme, metric, x, stored, text)
    if not pd.isna(row["value"]) and row["unit"] != "bool":
        assert _close(nums[0], float(row["value"])), (scheme, metric, text)
    # whole number only: "n=4" must not pass on a cell that shows "n=40"
    assert re.search(rf"(?<![\w.])n={int(row['n'])}(?![\d,.])", text), (scheme, metric, text)
    if row["label"] != "measured":
        assert row["label"] in text
    return len(nums)


def test_markdown_round_trip(stored):
    db, rid, df = stored
    md = export_run(db, "latest", "md")
    lines = md.splitlines()
    checked = 0
    for i, ln in enumerate(lines):
        if not (ln.startswith("### ") and ln.endswith(": figures")):
            continue
        header = [c.strip() for c in lines[i + 2].strip("|").split(" | ")]
        metrics = [h.split(" (")[0] for h in header[2:]]
        j = i + 4
        while j < len(lines) and lines[j].startswith("|"):
            cells = [c.strip() for c in lines[j].strip().strip("|").split(" | ")]
            for m, cell in zip(metrics, cells[2:]):
                checked += _check_cell(df, cells[0], m, re.sub(r"^\W+", "", cell))
            j += 1
    assert checked >= 30
    assert f"run: {rid}" in md and "seed: 7" in md


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.cur = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-metric" in a:
            self.cur = [a["data-scheme"], a["data-metric"], a.get("style", ""), ""]

    def handle_data(self, data):
        if self.cur is not None:
            self.cur[3] += " " + data

    def handle_endtag(self, tag):
        if tag == "td" and self.cur is not None:
            self.cells.append(self.cur)
            self.cur = None


def _grade(rub, metric, x) -> str:
    r = rub.rule(metric)
    g, a, red = rub.ratings
    if r.direction == "higher":
        return g if x >= r.green else a if x >= r.amber else red
    return g if x <= r.green else a if x <= r.amber else red


def _ends(rub, metric, row) -> tuple[float, float]:
    """(worse, better) end for the scheme: the interval where stored, else the value."""
    if pd.isna(row["ci_low"]) or pd.isna(row["ci_high"]):
        return float(row["value"]), float(row["value"])
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    return (lo, hi) if rub.rule(metric).direction == "higher" else (hi, lo)


def _expected_rating(rub, metric, row) -> str:
    """Independent of the rubric code: the worse end of the stored interval against the file's
    thresholds; unrated labels (declared, modelled, ...) and missing values get no colour."""
    if row is None or pd.isna(row["value"]) or row["label"] not in ("measured", "sampled", "bounded"):
        return rub.not_measured
    return _grade(rub, metric, _ends(rub, metric, row)[0])


def test_html_round_trip_and_colours(stored):
    db, rid, df = stored
    rub = load_rubric()
    p = _Cells()
    p.feed(export_run(db, "latest", "html"))
    assert len(p.cells) == 2 * sum(len(c.rules) for c in rub.criteria)
    checked = 0
    for scheme, metric, style, text in p.cells:
        checked += _check_cell(df, scheme, metric, text)
        want = rub.colour(_expected_rating(rub, metric, _overall(df, scheme, metric)))
        assert want in style, (scheme, metric, style)
    assert checked >= 30


def test_latex_round_trip_and_structure(stored, tmp_path):
    db, rid, df = stored
    tex = export_run(db, "latest", "latex")
    assert tex.count("{") == tex.count("}")
    for env in ("document", "tabular", "table"):
        assert tex.count(rf"\begin{{{env}}}") == tex.count(rf"\end{{{env}}}") > 0
    for pkg in ("booktabs", "colortbl"):
        assert rf"\usepackage{{{pkg}}}" in tex
    assert r"\usepackage[table]{xcolor}" in tex and r"\cellcolor{ratinggreen}" in tex
    checked = 0
    for block in re.findall(r"\\begin\{tabular\}\{([^\n]*)\}\n(.*?)\\end\{tabular\}", tex, re.S):
        spec, body = block
        ncols = len(re.findall(r"[lcrP]", re.sub(r"\{[^}]*\}", "", spec)))
        rows = [r for r in body.split("\n") if r.endswith(r"\\")]
        for r in rows:
            assert r.count(" & ") == ncols - 1, r
        if "Rating" not in rows[0]:
            continue
        metrics = [m.strip().replace(r"\_\allowbreak{}", "_") for m in rows[0][:-2].split(" & ")[2:]]
        for r in rows[2:]:
            cells = r[:-2].split(" & ")
            scheme = cells[0].replace(r"\_", "_")
            for m, c in zip(metrics, cells[2:]):
                c = re.sub(r"\\cellcolor\{\w+\}|\\newline|\\scriptsize|\\itshape|[{}]", " ", c)
                c = c.replace("\\textendash{}", "\u2013")
                checked += _check_cell(df, scheme, m, c)
    assert checked >= 30
    engine = shutil.which("pdflatex") or shutil.which("lualatex") or shutil.which("xelatex")
    if engine:
        (tmp_path / "t.tex").write_text(tex)
        r = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:]


def test_xlsx_round_trip_fills_units_frozen(stored):
    from openpyxl import load_workbook
    db, rid, df = stored
    rub = load_rubric()
    wb = load_workbook(io.BytesIO(export_run(db, "latest", "xlsx")))
    checked = 0
    for c in rub.criteria:
        ws = wb[c.title[:31]]
        assert ws.freeze_panes == "D4"
        assert str(ws.cell(2, 4).value).startswith("unit:")
        for row in ws.iter_rows(min_row=4):
            scheme = row[0].value
            for i, m in enumerate(c.metrics):
                cells = row[3 + 5 * i: 8 + 5 * i]
                st = _overall(df, scheme, m)
                want = rub.colour(_expected_rating(rub, m, st)).lstrip("#").upper()
                assert cells[0].fill.fgColor.rgb[-6:] == want, (scheme, m)
                if st is None:
                    assert cells[0].value == "not measured" and cells[4].value == "not measured"
                    continue
                assert cells[4].value == st["label"], (scheme, m)
                for cell, key in zip(cells, ("value", "ci_low", "ci_high", "n")):
                    v = st[key]
                    if v is None or pd.isna(v):
                        assert cell.value is None or (key == "value" and cell.value == st["text"])
                    else:
                        assert cell.value == pytest.approx(float(v), rel=0, abs=0), (scheme, m, key)
                        checked += 1
    assert checked >= 40
    assert "Provenance" in wb.sheetnames
    prov = {r[0].value: r[1].value for r in wb["Provenance"].iter_rows()}
    assert prov["run"].startswith(rid) and prov["seed"] == "7"


def _long_matches(df, rows):
    n = 0
    for r in rows:
        if r["label"] == "not measured":
            assert r["value"] is None or pd.isna(r["value"])
            continue
        st = df[(df.scheme == r["scheme"]) & (df.metric == r["metric"]) & (df.params == r["params"])]
        assert len(st) == 1, r
        st = st.iloc[0]
        for k in ("value", "ci_low", "ci_high", "n"):
            a, b = r[k], st[k]
            assert (a is None or pd.isna(a)) == pd.isna(b), (r, k)
            if not pd.isna(b):
                assert float(a) == float(b), (r, k)
                n += 1
        assert r["unit"] == st["unit"] and r["label"] == st["label"]
    return n


def test_csv_and_json_long_form_round_trip(stored):
    db, rid, df = stored
    csv = pd.read_csv(io.StringIO(export_run(db, "latest", "csv")), keep_default_na=True)
    csv = csv.astype(object).where(csv.notna(), None)
    assert set(csv["run_id"]) == {rid}
    assert _long_matches(df, csv.to_dict(orient="records")) >= 40
    js = json.loads(export_run(db, "latest", "json"))
    assert _long_matches(df, js["assessment"]) >= 40
    assert js["provenance"]["run_id"] == rid and js["provenance"]["seed"] == 7
    assert len(js["measurements"]) == len(df)


def test_export_cli_formats_and_errors(stored, tmp_path, capsys):
    db, rid, df = stored
    for fmt, suffix in (("md", "md"), ("latex", "tex"), ("xlsx", "xlsx"), ("html", "html")):
        out = tmp_path / f"a.{suffix}"
        assert main(["export", "--db", db, "--run", rid, "--format", fmt, "--out", str(out)]) == 0
        assert out.stat().st_size > 500
    assert main(["export", "--db", db, "--format", "pdf"]) == 2
    assert main(["export", "--db", db, "--format", "xlsx"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[criteria.x.metrics.recall]\ndirection = 'sideways'\ngreen = 1\namber = 0\n")
    assert main(["export", "--db", db, "--rubric", str(bad), "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert "criteria.x.metrics.recall.direction" in err and "Traceback" not in err
    assert not (tmp_path / "x.md").exists()


@pytest.mark.slow
def test_report_quick_writes_every_format_and_figures(tmp_path):
    from openpyxl import load_workbook
    out = tmp_path / "rep"
    assert main(["report", "--quick", "--schemes", "server-side,on-device-list", "--out", str(out)]) == 0
    for suffix in ("md", "csv", "json", "tex", "xlsx", "html"):
        assert (out / f"assessment.{suffix}").stat().st_size > 500
    from e2eebench.evaluation.assess.browser import find_chromium
    picture = out / "assessment.html.png"
    assert picture.exists() == (find_chromium() is not None)
    pngs = sorted(p for p in out.glob("*.png") if p != picture)
    assert len(pngs) == 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in [*pngs, *[picture][:picture.exists()]])
    summary = (out / "summary.md").read_text()
    assert "Findings by criterion" in summary and all(p.name in summary for p in pngs)
    rub = load_rubric()
    fills = {c.fill.fgColor.rgb[-6:] for ws in load_workbook(out / "assessment.xlsx") for row in ws.iter_rows()
             for c in row if c.fill and c.fill.fill_type == "solid"}
    assert {rub.colour(k).lstrip("#").upper() for k in ("green", "red")} <= fills
    # the stored run behind the report is re-readable with --run
    again = tmp_path / "again"
    assert main(["report", "--run", "latest", "--db", str(out / "e2eebench.duckdb"), "--out", str(again)]) == 0
    assert (again / "assessment.md").read_text() == (out / "assessment.md").read_text()
