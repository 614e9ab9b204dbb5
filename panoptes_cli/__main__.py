"""``python -m panoptes_cli`` runs the ``panoptes`` command."""

from panoptes_cli.commands.main import main

main()
