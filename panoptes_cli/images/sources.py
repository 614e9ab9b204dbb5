"""The star list solve-field matches, made with astrometry.net's programs and filtered here.

Given a FITS image, solve-field finds the stars with its image2xy code, then
runs two short Python programs of astrometry.net on the list: one drops
sources piled up in a single pixel column or row (bleed trails, bad columns),
the other reorders the list so that the first stars tried are spread over
the whole field. Each of them starts a fresh interpreter that loads numpy and
astropy: about 0.4 s apiece, three quarters of the time a 700-pixel frame
takes to solve. :func:`source_list` runs astrometry.net's ``image2xy`` (the
same C code, the same defaults) and ``tabsort`` programs and does the rest
in this process, which has numpy loaded already; solve-field then gets the
finished list. ``tests/test_sources.py`` checks that it is the list
solve-field makes itself, star for star and in the same order.

The steps, as astrometry.net 0.93 takes them:

1. lines (:func:`on_lines`): sources are counted in one-pixel bins of X, and
   of Y; a bin holding far more than a Poisson count allows (log-likelihood
   below -100) loses all its sources;
2. brightness (:func:`brightness_order`): brightest first, alternating
   between the order by flux and the order by flux plus background;
3. spread (:func:`spread_order`): the field is cut into about ten cells; the
   list takes the brightest source of every cell, then the second of every
   cell, and so on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from panoptes_cli.error import SolveError, Timeout
from panoptes_cli.images.solve_options import SPREAD_CELLS
from panoptes_cli.programs import failure_message, find_program, run

PathLike = str | os.PathLike

# astrometry.net's significance cut for a line of sources.
LINE_CUT = 100.0


def on_lines(values: np.ndarray, cut: float = LINE_CUT) -> np.ndarray:
    """Return True for the sources in one-pixel bins that hold implausibly many of them.

    A bin's excess count ``k`` (sources beyond the first) is scored as
    ``k ln(m) - m - k(k-1)/2``, ``m`` the mean excess of the bins holding two or
    more; a score below ``-cut`` marks the bin (astrometry.net's rule and constant).

    >>> column = np.r_[np.full(40, 100.2), np.linspace(0, 600, 60)]
    >>> int(on_lines(column).sum()), bool(on_lines(np.linspace(0, 600, 100)).any())
    (40, False)
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    edges = np.arange(0, values.max() + 2) - 0.5
    counts, _ = np.histogram(values, edges)
    busy = np.flatnonzero(counts > 1)
    if busy.size == 0:
        return np.zeros(values.size, dtype=bool)
    excess = counts[busy] - 1
    mean = excess.sum() / busy.size
    score = excess * np.log(mean) - mean - excess * (excess - 1) / 2
    crowded = busy[score < -cut]
    return np.isin(np.floor(values + 0.5), crowded)


class _Budget:
    """The time one image's star list may take, shared by the programs that make it."""

    def __init__(self, image: Path, timeout: float | None = None):
        self.image = image
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def run(self, command: list[str], output: Path, what: str) -> None:
        """Run an astrometry.net tool that writes ``output``, within the time left."""
        import subprocess

        left = None if self.deadline is None else max(0.001, self.deadline - time.monotonic())
        try:
            done = run(command, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            raise Timeout(f'{self.image}: no solution within {self.timeout:g} s: {what} took '
                          'all of it; give it longer with a larger timeout') from None
        if done.returncode != 0 or not output.exists():
            raise SolveError(f'{self.image}: {what} failed: {Path(command[0]).name}: '
                             f'{failure_message(done.stderr or done.stdout, done.returncode)}')


def brightness_order(flux: np.ndarray, background: np.ndarray, workdir: PathLike,
                     budget: _Budget | None = None) -> np.ndarray:
    """Return the sources' order, brightest first, alternating flux and flux + background.

    Saturated stars all have the saturation level as flux + background, so
    that order has many ties, which solve-field leaves in the order its
    quicksort happens to give. Both orders therefore come from astrometry.net's
    ``tabsort`` (the same sort), run on a table written in ``workdir``.

    >>> order = brightness_order(np.array([5., 9., 7.]), np.array([0., 0., 10.]),
    ...                          getfixture('tmp_path'))
    >>> order.tolist()
    [1, 2, 0]
    """
    from astropy.io import fits

    workdir = Path(workdir)
    flux = np.asarray(flux, dtype=float)
    table = workdir / 'brightness.fits'
    columns = [fits.Column(name='INDEX', format='J', array=np.arange(flux.size)),
               fits.Column(name='FLUX', format='D', array=flux),
               fits.Column(name='TOTAL', format='D',
                           array=flux + np.asarray(background, dtype=float))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(
        table, overwrite=True)
    tabsort, budget = find_program('tabsort'), budget or _Budget(table)
    orders = []
    for column in ('FLUX', 'TOTAL'):
        by_column = workdir / f'by-{column.lower()}.fits'
        budget.run([tabsort, '-d', column, os.fspath(table), os.fspath(by_column)], by_column,
                   'sorting the stars')
        with fits.open(by_column) as hdul:
            orders.append(np.asarray(hdul[1].data['INDEX']).tolist())
        by_column.unlink()
    table.unlink()
    taken = np.zeros(flux.size, dtype=bool)
    order = []
    for pair in zip(*orders):
        for index in pair:
            if not taken[index]:
                taken[index] = True
                order.append(index)
    return np.array(order, dtype=int)


def spread_order(x: np.ndarray, y: np.ndarray, cells: int = SPREAD_CELLS) -> np.ndarray:
    """Return an order that takes the first source of each cell, then the second of each...

    The sources' bounding box is cut into about ``cells`` cells (as square as
    the box allows); within a round, sources keep their order in the input.

    >>> spread_order(np.array([0., 1., 2., 9., 10.]), np.array([0., 0., 0., 10., 10.]),
    ...              cells=2).tolist()
    [0, 3, 1, 4, 2]
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size == 0:
        return np.zeros(0, dtype=int)
    width, height = x.max() - x.min(), y.max() - y.min()
    if width == 0 or height == 0:
        return np.arange(x.size)
    columns = int(max(1, np.round(width / np.sqrt(width * height / float(cells)))))
    rows = int(max(1, np.round(cells / float(columns))))
    column = np.clip(np.floor((x - x.min()) / width * columns), 0, columns - 1).astype(int)
    row = np.clip(np.floor((y - y.min()) / height * rows), 0, rows - 1).astype(int)
    cell = row * columns + column
    # Each source's rank in its cell: its position among the cell's sources, in input order.
    by_cell = np.argsort(cell, kind='stable')
    sorted_cells = cell[by_cell]
    first = np.searchsorted(sorted_cells, sorted_cells, side='left')
    rank = np.empty(x.size, dtype=int)
    rank[by_cell] = np.arange(x.size) - first
    return np.lexsort((np.arange(x.size), rank))


def source_list(image: PathLike, target: PathLike, downsample: int = 1, *,
                remove_lines: bool = True, cells: int = SPREAD_CELLS,
                timeout: float | None = None) -> int:
    """Find the stars in a FITS image and write the list solve-field matches; return its length.

    Runs ``image2xy`` on the primary image (downsampled by ``downsample``),
    then drops lines of sources (unless ``remove_lines`` is False), sorts by
    brightness and spreads the list over ``cells`` cells (0: not spread).
    ``target`` gets a FITS table (X, Y, FLUX, BACKGROUND) whose primary
    header carries the image's keywords, so ``--guess-scale`` reads them.

    Raises:
        ProgramNotFound: image2xy or tabsort is not installed.
        SolveError: image2xy or tabsort failed.
        Timeout: They took more than ``timeout`` seconds.
    """
    from astropy.io import fits

    image, target = Path(image), Path(target)
    budget = _Budget(image, timeout)
    raw = target.with_name(f'{target.stem}-image2xy.fits')
    budget.run([find_program('image2xy'), '-O', '-d', str(max(1, int(downsample))),
                '-o', os.fspath(raw), os.fspath(image)], raw, 'finding the stars')
    with fits.open(raw) as found:
        table = found[1].data
        columns = {name: np.asarray(table[name], dtype=np.float32)
                   for name in ('X', 'Y', 'FLUX', 'BACKGROUND')}
    raw.unlink()
    if remove_lines and columns['X'].size:
        keep = ~(on_lines(columns['X']) | on_lines(columns['Y']))
        columns = {name: values[keep] for name, values in columns.items()}
    order = brightness_order(columns['FLUX'], columns['BACKGROUND'], target.parent, budget)
    columns = {name: values[order] for name, values in columns.items()}
    if cells > 0:
        order = spread_order(columns['X'], columns['Y'], cells)
        columns = {name: values[order] for name, values in columns.items()}
    # The image's own keywords, without those describing its data (and its checksums).
    header = fits.getheader(image).copy(strip=True)
    for keyword in ('CHECKSUM', 'DATASUM'):
        header.remove(keyword, ignore_missing=True)
    primary = fits.PrimaryHDU(header=header)
    units = {'X': 'pix', 'Y': 'pix', 'FLUX': 'unknown', 'BACKGROUND': 'unknown'}
    stars = fits.BinTableHDU.from_columns(
        [fits.Column(name=name, format='E', unit=units[name], array=values)
         for name, values in columns.items()])
    fits.HDUList([primary, stars]).writeto(target, overwrite=True)
    return int(columns['X'].size)
