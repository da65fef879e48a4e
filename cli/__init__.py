"""The ``zhtext`` command line (installed as the ``zhtext_cli`` package): Typer commands only."""
