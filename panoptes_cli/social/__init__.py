"""panoptes_cli.social (being built)."""
