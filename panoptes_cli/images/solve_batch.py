"""Plate-solve many images at once: here in threads, or as tasks on a Dask cluster.

:func:`solve_fields` takes the names as they arrive (a pipe streams) and yields
one result record per image as each finishes; :func:`solve_record` solves one
image into such a record. The manual documents :func:`solve_fields` under
:mod:`panoptes_cli.images.fits`, which re-exports it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterable

from panoptes_cli.error import PanError
from panoptes_cli.images._fits_io import PathLike
from panoptes_cli.images.solve import failure, solve_file, summary
from panoptes_cli.images.solve_options import SolveOptions
from panoptes_cli.images.solve_process import SolveBatch, current_batch


def solve_record(fname: PathLike, options: SolveOptions, *, replace: bool = True,
                 overwrite: bool = True, skip_solved: bool = True) -> dict:
    """Plate-solve one image with :func:`solve_file`; describe the outcome as a batch result.

    A failure (no solution, timeout, not FITS...) is a result too, with ``error``.
    """
    started = time.monotonic()
    try:
        info = solve_file(fname, options, replace=replace, overwrite=overwrite,
                          skip_solved=skip_solved)
    except (PanError, OSError, ValueError) as exc:
        return failure(os.fspath(fname), exc, time.monotonic() - started)
    return summary(os.fspath(fname), info, time.monotonic() - started, skipped=info['skipped'])


def solve_fields(fnames: Iterable[PathLike], jobs: int | None = None,
                 options: SolveOptions | None = None, *, replace: bool = True,
                 overwrite: bool = True, skip_solved: bool = True, scheduler: str | None = None,
                 **kwargs):
    """Plate-solve many images in parallel; yield one result per image as each finishes.

    Each image goes through :func:`solve_file` with ``options`` (or, without
    them, the options :func:`get_solve_field` reads from ``kwargs``).
    A result is a dict: ``filename``, ``solved``, and for a solution
    ``output`` (the solved file), ``ra`` and ``dec`` of the centre and ``rotation`` (degrees),
    ``pixel_scale`` (arcsec/pixel), ``field_width`` and ``field_height``
    (degrees), ``skipped``; for a failure ``error``; always ``seconds``.
    Closing the generator early (Ctrl-C) stops the solves still running.

    Args:
        fnames: The images.
        jobs: How many solve at once here; the number of CPU cores by default.
        options: How to solve each image.
        replace, overwrite, skip_solved: As for :func:`get_solve_field`.
        scheduler: A Dask scheduler address: solve each image as a task on that
            cluster's workers instead (see :mod:`panoptes_cli.cluster`).
        **kwargs: ``timeout`` and the keyword arguments of :func:`get_solve_field`,
            when ``options`` is not given.

    Yields:
        One result dict per image, in the order they finish.
    """
    from panoptes_cli.runner import LocalRunner

    if options is None:
        options = SolveOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise TypeError('solve_fields() takes the options as a SolveOptions or as keyword '
                        'arguments, not both')
    solve = functools.partial(solve_record, options=options, replace=replace,
                              overwrite=overwrite, skip_solved=skip_solved)
    if scheduler:
        yield from _solve_on_cluster(fnames, scheduler, solve)
        return
    batch = SolveBatch()

    def solve_one(fname) -> dict:
        current_batch.set(batch)
        if batch.cancelled:
            return failure(os.fspath(fname), PanError(f'{fname}: cancelled'), 0.0)
        return solve(fname)

    # Threads: the work is solve-field's, in processes that cancelling the batch stops.
    # Names may come from a pipe: each is solved as it arrives, each result yielded as
    # it is ready.
    runner = LocalRunner(max(1, jobs or os.cpu_count() or 1), threads=True, cancel=batch.cancel)
    with contextlib.closing(runner.map_unordered(solve_one, fnames)) as outcomes:
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
            yield outcome.value


def _solve_on_cluster(fnames: Iterable[PathLike], scheduler: str, solve):
    """Yield solve results from a Dask cluster, one task an image (solve-field runs there)."""
    from panoptes_cli.cluster import DaskRunner

    runner = DaskRunner(scheduler, programs=['solve-field', 'wcsinfo'])
    with contextlib.closing(runner.map_unordered(solve, map(os.fspath, fnames))) as outcomes:
        for outcome in outcomes:
            # A task that raised (its worker died too often, no worker can solve) has no timing.
            yield (outcome.value if outcome.error is None
                   else failure(outcome.item, outcome.error, 0.0))
