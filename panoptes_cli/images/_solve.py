"""Running astrometry.net's ``solve-field`` and ``wcsinfo``: processes, options, output.

The public functions are in :mod:`panoptes_cli.images.fits`; this module
holds the machinery they share: a solve-field process with a wall-clock
deadline and a private working directory, the command line, and the parsing
of what ``wcsinfo`` prints.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from panoptes_cli.error import InvalidCommand, PanError, Timeout

# solve-field's own options as the manual's solve_field uses them, except the
# downsampling (chosen from the image size) and the outputs we do not read.
DEFAULT_OPTIONS = [
    '--guess-scale', '--no-verify', '--crpix-center', '--temp-axy',
    '--index-xyls', 'none', '--solved', 'none', '--match', 'none', '--rdls', 'none',
    '--corr', 'none', '--new-fits', 'none', '--no-plots',
]
# Mount positions are a hint, not the camera's pointing: a PANOPTES camera
# looks several degrees away from the mount axis.
DEFAULT_RADIUS = 15.0
# Downsample only while the smaller side keeps this many pixels: fewer leave
# too few stars to match (a 200 px crop does not solve downsampled by 2).
MIN_DOWNSAMPLED_SIDE = 300
# Keywords of a WCS, removed from a header before a new solution goes in, so
# that no term of an older (e.g. higher-order SIP) solution survives.
_WCS_KEYWORD = re.compile(
    r'^(WCSAXES|WCSNAME|LONPOLE|LATPOLE|RADESYS|IMAGEW|IMAGEH|CTYPE\d|CRVAL\d|CRPIX\d|CUNIT\d|'
    r'CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+|(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+))$')



class SolveBatch:
    """The solve-field processes of one batch, so that cancelling it stops them all.

    A process started while the batch is current (see :data:`current_batch`)
    joins it; one that starts after :meth:`cancel` is stopped at once.
    """

    def __init__(self):
        self.processes: set[SolveFieldProcess] = set()
        self.cancelled = False
        self._lock = threading.Lock()

    def add(self, process: SolveFieldProcess) -> None:
        with self._lock:
            self.processes.add(process)
            cancelled = self.cancelled
        if cancelled:
            process.stop()

    def discard(self, process: SolveFieldProcess) -> None:
        with self._lock:
            self.processes.discard(process)

    def cancel(self) -> None:
        """Stop every process of the batch, and any that starts from now on."""
        with self._lock:
            self.cancelled = True
            processes = list(self.processes)
        for process in processes:
            process.stop()


current_batch: contextvars.ContextVar[SolveBatch | None] = contextvars.ContextVar(
    'current_batch', default=None)


def downsample_for(width: int, height: int) -> int:
    """Return the downsampling factor (4, 2 or 1) that leaves enough pixels to solve.

    >>> downsample_for(5208, 3476), downsample_for(700, 700), downsample_for(200, 200)
    (4, 2, 1)
    """
    for factor in (4, 2):
        if min(width, height) // factor >= MIN_DOWNSAMPLED_SIDE:
            return factor
    return 1


def option_args(options: Mapping) -> list[str]:
    """Turn ``{'--opt': value}`` into solve-field arguments.

    True gives the bare flag, False or None leaves it out, a list repeats it.

    >>> option_args({'--overwrite': True, '--no-tweak': False, '--pnm': '/tmp/a.bmp',
    ...              '--depth': [10, 20]})
    ['--overwrite', '--pnm', '/tmp/a.bmp', '--depth', '10', '--depth', '20']
    """
    args = []
    for key, value in options.items():
        if not key.startswith('-'):
            raise TypeError(f'solve-field options start with "--": {key!r}')
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is True:
                args.append(key)
            elif item is not None and item is not False:
                args.extend([key, str(item)])
    return args


def index_config(index_dirs: Iterable[os.PathLike | str], workdir: Path) -> Path:
    """Write a backend config file that searches ``index_dirs`` for index files."""
    lines = []
    for directory in index_dirs:
        directory = Path(directory).expanduser().resolve()
        if not directory.is_dir():
            raise PanError(f'{directory}: no such index directory')
        lines.append(f'add_path {directory}')
    config = workdir / 'backend.cfg'
    config.write_text('\n'.join([*lines, 'autoindex', '']))
    return config


def find_program(name: str) -> str:
    """Return the path of an astrometry.net program, or raise InvalidCommand."""
    path = shutil.which(name)
    if path is None:
        raise InvalidCommand(f'{name} not found: install astrometry.net '
                             '(Debian: apt install astrometry.net)')
    return path


class SolveFieldProcess(subprocess.Popen):
    """A running ``solve-field``: a Popen with a private directory and a wall-clock deadline.

    solve-field runs in a process group of its own, so that the helpers it
    starts (astrometry-engine, image converters) are stopped with it.
    :meth:`communicate` and :meth:`wait` stop the whole group at the deadline;
    leaving the ``with`` block stops it if it is still running and removes the
    private directory with every file solve-field made.
    """

    def __init__(self, args: list[str], *, fits_file: Path, solve_file: Path, wcs_file: Path,
                 workdir: Path, timeout: float, **kwargs):
        self.fits_file = fits_file
        self.solve_file = solve_file
        self.wcs_file = wcs_file
        self.workdir = workdir
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.batch = current_batch.get()
        super().__init__(args, process_group=0, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, **kwargs)
        if self.batch is not None:
            self.batch.add(self)

    def _left(self, timeout: float | None) -> float:
        left = max(0.0, self.deadline - time.monotonic())
        return left if timeout is None else min(timeout, left)

    def communicate(self, input=None, timeout=None):
        """Wait for solve-field (at most until the deadline) and return its output.

        Raises:
            Timeout: The deadline passed; solve-field and its helpers were stopped.
        """
        return self._until_deadline(functools.partial(super().communicate, input), timeout)

    def wait(self, timeout=None):
        """Wait for solve-field to end, at most until the deadline (then raise Timeout)."""
        return self._until_deadline(super().wait, timeout)

    def _until_deadline(self, call, timeout: float | None):
        """Run ``call(timeout=...)`` cut at the deadline; at the deadline stop solve-field."""
        try:
            return call(timeout=self._left(timeout))
        except subprocess.TimeoutExpired:
            if timeout is not None and time.monotonic() < self.deadline:
                raise
            self.stop()
            call()
            raise Timeout(f'{self.fits_file}: solve-field found no solution within '
                          f'{self.timeout:g} s; give it longer with a larger timeout') from None

    def stop(self) -> None:
        """Stop solve-field and its helpers: SIGTERM to the group, SIGKILL if it lingers."""
        if self.returncode is not None:
            return
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            try:
                subprocess.Popen.wait(self, timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def cleanup(self) -> None:
        """Stop the process if it runs and remove its private directory."""
        self.stop()
        if self.batch is not None:
            self.batch.discard(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, exc_type, value, traceback):
        try:
            self.stop()
            super().__exit__(exc_type, value, traceback)
        finally:
            self.cleanup()


def make_workdir() -> Path:
    """Make a private directory (in $TMPDIR) for one solve's temporary and output files."""
    return Path(tempfile.mkdtemp(prefix='panoptes-solve-'))


def parse_wcsinfo(text: str) -> dict:
    """Parse ``wcsinfo``'s ``key value`` lines, numbers as int or float.

    >>> parse_wcsinfo('pixscale 10.30324634\\nimagew 700\\nra_center_hms 20:12:50.628\\n')
    {'pixscale': 10.30324634, 'imagew': 700, 'ra_center_hms': '20:12:50.628'}
    """
    info = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(' ')
        if not key:
            continue
        value = value.strip()
        for kind in (int, float):
            try:
                info[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            info[key] = value
    return info


def run_wcsinfo(path: Path, extension: int, options: Mapping) -> dict | None:
    """Run ``wcsinfo`` on one HDU; return its parsed output, or None if it found no WCS."""
    args = [find_program('wcsinfo'), *option_args(options)]
    if extension:
        args += ['-e', str(extension)]
    completed = subprocess.run([*args, os.fspath(path)], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        return None
    return parse_wcsinfo(completed.stdout)


def remove_wcs(header) -> None:
    """Remove every WCS keyword from an astropy Header."""
    for keyword in [key for key in header if _WCS_KEYWORD.match(key)]:
        header.remove(keyword, ignore_missing=True, remove_all=True)


def wcs_cards(wcs_header) -> list:
    """The cards of a solution to put in an image header: the WCS, not the file's own.

    DATE is when solve-field wrote its file, not when the image was taken;
    the COMMENT and HISTORY lines would pile up with every solve.
    """
    skip = {'SIMPLE', 'BITPIX', 'NAXIS', 'EXTEND', 'DATE', 'COMMENT', 'HISTORY', ''}
    return [card for card in wcs_header.cards if card.keyword not in skip]


def summary(fits_file: str, info: Mapping, seconds: float, skipped: bool = False) -> dict:
    """The record ``panoptes fits solve`` prints for a solved file.

    Field sizes are in degrees whatever unit wcsinfo chose for them.
    """
    to_degrees = {'degrees': 1.0, 'arcminutes': 1 / 60, 'arcseconds': 1 / 3600}.get(
        info.get('fieldunits'), 1.0)
    return {
        'filename': fits_file,
        'solved': True,
        'skipped': skipped,
        'solved_file': info.get('solved_fits_file', fits_file),
        'ra': info.get('ra_center'),
        'dec': info.get('dec_center'),
        'pixel_scale': info.get('pixscale'),
        'rotation': info.get('orientation'),
        'field_width': _rounded(info.get('fieldw'), to_degrees),
        'field_height': _rounded(info.get('fieldh'), to_degrees),
        'seconds': round(seconds, 3),
    }


def _rounded(value, factor):
    return None if value is None else round(value * factor, 6)


def failure(fits_file: str, error: BaseException, seconds: float) -> dict:
    """The record ``panoptes fits solve`` prints for a file that did not solve."""
    message = getattr(error, 'msg', None) or str(error) or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        message = f'{error.filename}: {error.strerror}'
    return {'filename': fits_file, 'solved': False, 'error': message,
            'seconds': round(seconds, 3)}
