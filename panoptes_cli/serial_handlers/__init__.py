"""panoptes_cli.serial_handlers (being built)."""
