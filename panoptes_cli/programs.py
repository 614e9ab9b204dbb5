"""The external programs panoptes runs: finding them, running them, and saying why they failed.

Every run of solve-field, wcsinfo, fpack, funpack, dcraw, exiftool or ffmpeg
goes through :func:`run` or :class:`Process`, which log its full command line
and, when it ends, its duration and exit status at DEBUG (``panoptes
--verbose``), so an operator can rerun it by hand. A missing program raises
:class:`~panoptes_cli.error.ProgramNotFound` naming the Debian package to
install, read from the same list ``install.sh`` and the Docker image install
(``panoptes_cli/data/debian-packages.txt``).

>>> debian_package('solve-field'), debian_package('exiftool')
('astrometry.net', 'libimage-exiftool-perl')
>>> failure_message(b'reading...\\nError: disk on fire\\n\\n', 1)
'Error: disk on fire'
>>> failure_message('', -9)
'exit status -9'
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from panoptes_cli.error import ProgramNotFound

PACKAGE_LIST = Path(__file__).parent / 'data' / 'debian-packages.txt'


@functools.cache
def _packages_by_program() -> dict[str, str]:
    """Map each program in the package list to the Debian package that installs it."""
    packages = {}
    for line in PACKAGE_LIST.read_text().splitlines():
        package, *programs = line.split('#', 1)[0].split() or ['']
        for program in programs:
            packages[program] = package
    return packages


def debian_package(program: str) -> str:
    """Return the Debian package that installs ``program`` (its own name if not listed)."""
    name = os.path.basename(program)
    return _packages_by_program().get(name, name)


def find_program(name: str) -> str:
    """Return the full path of an external program, or say how to install it.

    >>> find_program('no-such-program-here')
    Traceback (most recent call last):
    ...
    panoptes_cli.error.ProgramNotFound: ProgramNotFound: no-such-program-here is not installed (or not on PATH); install it with: sudo apt-get install no-such-program-here
    """
    path = shutil.which(name)
    if path is None:
        raise ProgramNotFound(f'{name} is not installed (or not on PATH); install it with: '
                              f'sudo apt-get install {debian_package(name)}')
    return path


def failure_message(output: str | bytes | None, returncode: int | None) -> str:
    """Say why a program failed: the last non-blank line it wrote, else its exit status."""
    if isinstance(output, bytes):
        output = output.decode(errors='replace')
    lines = [line.strip() for line in (output or '').splitlines() if line.strip()]
    return lines[-1] if lines else f'exit status {returncode}'


def command_line(args: Sequence) -> str:
    """The command as one shell-quoted line, to paste into a terminal.

    >>> command_line(['solve-field', '--ra', '303.2', '/data/my frame.fits'])
    "solve-field --ra 303.2 '/data/my frame.fits'"
    """
    return shlex.join(os.fspath(arg) for arg in args)


def _debug(message: str) -> None:
    # loguru costs ~40 ms to import: load it only when logging can be on (the CLI sets
    # PANOPTES_LOG_LEVEL=DEBUG for --verbose; a library caller has imported it to enable it).
    if ('panoptes_cli.logging' in sys.modules
            or os.environ.get('PANOPTES_LOG_LEVEL', '').upper() in ('DEBUG', 'TRACE')):
        from panoptes_cli.logging import logger

        logger.debug(message)


def _log_end(args: Sequence, started: float, returncode: int | None) -> None:
    how = 'was stopped' if returncode is None else f'ended (exit status {returncode})'
    _debug(f'{os.path.basename(os.fspath(args[0]))} {how} after '
           f'{time.monotonic() - started:.3f} s')


def run(args: Sequence, **kwargs) -> subprocess.CompletedProcess:
    """Run a program to its end (``subprocess.run``), logging its command line and duration.

    Standard input is closed unless ``stdin`` or ``input`` is given, so a
    program that would prompt fails instead of waiting.
    """
    if 'input' not in kwargs:
        kwargs.setdefault('stdin', subprocess.DEVNULL)
    _debug(f'Running: {command_line(args)}')
    started = time.monotonic()
    returncode = None
    try:
        completed = subprocess.run(args, **kwargs)
        returncode = completed.returncode
        return completed
    finally:
        _log_end(args, started, returncode)


class Process(subprocess.Popen):
    """A program started in the background (``subprocess.Popen``), logged as :func:`run` logs.

    The command line is logged when it starts; its duration and exit status
    when a ``wait()`` (or ``communicate()``) first sees it end.
    """

    def __init__(self, args: Sequence, **kwargs):
        kwargs.setdefault('stdin', subprocess.DEVNULL)
        _debug(f'Running: {command_line(args)}')
        self._started = time.monotonic()
        self._end_logged = False
        super().__init__(args, **kwargs)

    def wait(self, timeout=None):
        """Wait for the program to end (see ``subprocess.Popen.wait``); log its duration."""
        try:
            return super().wait(timeout=timeout)
        finally:
            if self.returncode is not None and not self._end_logged:
                self._end_logged = True
                _log_end(self.args, self._started, self.returncode)
