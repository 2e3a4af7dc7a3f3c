"""Stage 4, assessment: the rubric, the rated assessment table, its export formats, the
report annex and its figures."""
