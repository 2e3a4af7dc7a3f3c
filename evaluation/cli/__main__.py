"""``python -m e2eebench.evaluation.cli``: the same command line as ``e2eebench``."""
from e2eebench.evaluation.cli.app import entry

entry()
