"""panoptes_cli.config (being built)."""
