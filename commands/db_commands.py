"""``panoptes db``: Observatory records: insert and find."""

import typer

NAME = 'db'
app = typer.Typer(help='Observatory records: insert and find.', no_args_is_help=True)
