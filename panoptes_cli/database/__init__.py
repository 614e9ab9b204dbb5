"""panoptes_cli.database (being built)."""
