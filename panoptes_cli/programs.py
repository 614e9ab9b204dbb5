"""The external programs the toolbox runs, and how to install the missing ones."""

from __future__ import annotations

import os
import shutil

from panoptes_cli.error import InvalidSystemCommand

# The Debian package that installs each external program the images tools run.
DEBIAN_PACKAGES = {'dcraw': 'dcraw', 'exiftool': 'libimage-exiftool-perl', 'ffmpeg': 'ffmpeg'}


def find_program(name: str) -> str:
    """Return the full path of an external program, or say how to install it.

    >>> find_program('no-such-program-here')
    Traceback (most recent call last):
    ...
    panoptes_cli.error.InvalidSystemCommand: InvalidSystemCommand: no-such-program-here is not installed (or not on PATH); install it with: sudo apt-get install no-such-program-here
    """
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(os.path.basename(name), os.path.basename(name))
        raise InvalidSystemCommand(
            f'{name} is not installed (or not on PATH); install it with: sudo apt-get install {package}')
    return path
