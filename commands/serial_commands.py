"""``panoptes serial``: Serial devices: list ports, listen, simulate boards."""

import typer

NAME = 'serial'
app = typer.Typer(help='Serial devices: list ports, listen, simulate boards.', no_args_is_help=True)
