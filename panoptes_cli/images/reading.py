"""Read the pixels of an image file, whatever camera format it is in."""

from __future__ import annotations

import os
from pathlib import Path

from panoptes_cli.images.fits import getdata

PathLike = str | os.PathLike


def read_image(fname: PathLike):
    """Return the pixels of a FITS image (``.fits``, ``.fits.fz``) or a CR2 raw frame.

    >>> from pathlib import Path
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> read_image(SHARED / 'tiny.fits').shape, read_image(SHARED / 'cr2' / 'synthetic.cr2').shape
    ((200, 200), (348, 520))
    """
    path = Path(fname)
    if image_kind(path) == '.cr2':
        # cr2 loads numpy: here, so that importing panoptes_cli.images stays cheap.
        from panoptes_cli.images.cr2 import read_cr2

        return read_cr2(path)
    return getdata(path)


def image_kind(fname: Path) -> str:
    """The kind of image a name says: '.fits' for FITS (plain or packed), else its suffix."""
    suffixes = [suffix.lower() for suffix in fname.suffixes]
    if suffixes[-1:] == ['.fz'] or suffixes[-2:-1] in (['.fits'], ['.fit']):
        return '.fits'
    return suffixes[-1] if suffixes else ''
