"""``panoptes image``: Pretty pictures, timelapses, focus and background."""

import typer

NAME = 'image'
app = typer.Typer(help='Pretty pictures, timelapses, focus and background.', no_args_is_help=True)
