"""Stage 5, the command line: the Typer app (``app``) and one module per command group."""
