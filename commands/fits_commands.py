"""``panoptes fits``: Inspect, compress and plate-solve FITS frames."""

import typer

NAME = 'fits'
app = typer.Typer(help='Inspect, compress and plate-solve FITS frames.', no_args_is_help=True)
