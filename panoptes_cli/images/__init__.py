"""panoptes_cli.images (being built)."""
