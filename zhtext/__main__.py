"""``python -m zhtext`` runs the same CLI as the ``zhtext`` command."""

from zhtext_cli.app import main

main()
