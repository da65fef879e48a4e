"""``python -m zhtext`` runs the same CLI as the ``zhtext`` command."""

from zhtext_cli.entry import main

main()
