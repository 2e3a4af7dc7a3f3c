"""What the report editor sees: the HTML table laid out by headless Chromium (skipped without it)."""
from __future__ import annotations

import pytest

from e2eebench.evaluation.assess.assessment import assess_run
from e2eebench.evaluation.assess.browser import find_chromium, layout, render_png
from e2eebench.evaluation.assess.formats import to_html
from e2eebench.evaluation.run.store import Measurement, ResultStore

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (Debian: chromium)")

LONG = "no hash in provider view; identical non-empty payloads on 0/1551 same-image pairs " * 2
ROWS = [Measurement("server-side", "recall", 0.875, "rate", 24, 0.69, 0.9566, {"slice": "all"}),
        Measurement("server-side", "linkability", None, "rate", 1551, text=LONG),
        Measurement("server-side", "db_exposure_bits", 0.0, "bits", 40, label="declared"),
        Measurement("psi-ad", "recall", 0.58, "rate", 24, 0.39, 0.75, {"slice": "all"}, label="sampled"),
        Measurement("psi-ad", "client_ms", 3.5, "ms", 100, 3.1, 3.9, label="modelled"),
        Measurement("psi-ad", "inversion_ssim", None, "ssim", 0, text=LONG)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    db = d / "s.duckdb"
    with ResultStore(db) as s:
        s.write_run(ROWS, command="test", config={"seed": 1}, seed=1)
    a = assess_run(str(db))
    p = d / "assessment.html"
    p.write_text(to_html(a))
    return a, p


def test_every_scheme_row_legend_and_label_is_laid_out(page):
    a, p = page
    lay = layout(p)
    assert lay.schemes == list(a.table["scheme"])            # every row of the roster, in order
    assert [x.split(":")[0] for x in lay.legend] == ["green", "amber", "red", "grey"]
    assert {"declared", "sampled", "modelled", "measured", "not measured"} <= set(lay.labels)
    assert not lay.overflows and not lay.wide_tables(), (lay.scroll_width, lay.client_width, lay.wide_tables())


def test_png_has_the_page_and_is_not_blank(page, tmp_path):
    from PIL import Image
    _, p = page
    png = tmp_path / "assessment.html.png"
    lay = render_png(p, png)
    im = Image.open(png).convert("L")
    assert im.size[0] == 1600 and im.size[1] == min(max(lay.scroll_height, 200), 30000)
    import numpy as np
    assert len(np.unique(np.asarray(im.resize((64, 64))))) > 10   # tables and colours, not a blank page
