"""``panoptes cr2``: Canon CR2 raw frames: convert and read EXIF."""

import typer

NAME = 'cr2'
app = typer.Typer(help='Canon CR2 raw frames: convert and read EXIF.', no_args_is_help=True)
