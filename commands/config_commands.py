"""``panoptes config``: The config server and config files."""

import typer

NAME = 'config'
app = typer.Typer(help='The config server and config files.', no_args_is_help=True)
