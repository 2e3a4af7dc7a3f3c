"""Labels travel with every value that is not a plain measurement, in every run output format."""
from __future__ import annotations

import io
import json

import pandas as pd

from e2eebench.evaluation.run.output import render, render_run_terminal, summary_json, summary_wide


def _df() -> pd.DataFrame:
    rows = [("enclave", "recall", 0.9, 0.8, 0.95, "rate", 40, None, "modelled", {"slice": "all"}),
            ("enclave", "client_ms", 3.0, 2.5, 3.5, "ms", 40, None, "modelled", {}),
            ("psi-ad", "recall", 0.75, 0.6, 0.85, "rate", 40, None, "sampled", {"slice": "all"}),
            ("psi-ad", "client_ms", 12.0, 11.0, 13.0, "ms", 40, None, "measured", {}),
            ("psi-ad", "verdict_to", None, None, None, "party", 1, "provider", "declared", {})]
    return pd.DataFrame([{"run_id": "r", "scheme": s, "metric": m, "value": v, "ci_low": lo, "ci_high": hi,
                          "unit": u, "n": n, "text": t, "label": lab, "params": json.dumps(p)}
                         for s, m, v, lo, hi, u, n, t, lab, p in rows])


def test_terminal_marks_labels_and_the_footer_explains_them(capsys):
    render_run_terminal(_df(), "t", order=["psi-ad", "enclave"])
    out = " ".join(capsys.readouterr().out.split())   # the console wraps the footer
    for lab in ("(modelled)", "(sampled)", "(declared)"):
        assert lab in out
    assert "(modelled) =" in out and "(declared) =" in out and "(extrapolated)" not in out
    assert out.count("(measured)") == 0


def test_md_csv_json_carry_labels():
    wide = summary_wide(_df())
    md = render(wide, "md")
    csv = pd.read_csv(io.StringIO(render(wide, "csv")))
    for text in (md, csv.to_string()):
        assert "0.9 [0.8, 0.95] n=40 (modelled)" in text.replace("0.9000", "0.9")
        assert "provider (declared)" in text and "(sampled)" in text
    assert "12.00 [11.00, 13.00]" in md and "12.00 [11.00, 13.00] (" not in md   # measured: unmarked
    js = {r["scheme"]: r for r in summary_json(_df())}
    assert js["enclave"]["recall"]["label"] == "modelled"
    assert js["psi-ad"]["measurements"]["verdict_to"][0]["label"] == "declared"
