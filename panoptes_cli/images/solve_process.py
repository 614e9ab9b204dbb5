"""A running solve-field: a process with a wall-clock deadline and a private directory.

Processes started for one batch (:class:`SolveBatch`) are stopped together
when the batch is cancelled (Ctrl-C, or a closed generator).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from panoptes_cli.error import Timeout
from panoptes_cli.programs import Process


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


class SolveFieldProcess(Process):
    """A running ``solve-field``: a Popen with a private directory and a wall-clock deadline.

    solve-field runs in a process group of its own, so that the helpers it
    starts (astrometry-engine, image converters) are stopped with it.
    :meth:`communicate` and :meth:`wait` stop the whole group at the deadline;
    leaving the ``with`` block stops it if it is still running and removes the
    private directory with every file solve-field made.
    """

    def __init__(self, args: list[str], *, fits_file: Path, solve_file: Path, wcs_file: Path,
                 workdir: Path, timeout: float, started: float | None = None, **kwargs):
        self.fits_file = fits_file
        self.solve_file = solve_file
        self.wcs_file = wcs_file
        self.workdir = workdir
        self.timeout = timeout
        # The deadline counts from ``started`` (monotonic) when work for this solve
        # came before solve-field (finding the stars).
        self.deadline = (time.monotonic() if started is None else started) + timeout
        self.batch = current_batch.get()
        super().__init__(args, process_group=0, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, **kwargs)
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
                Process.wait(self, timeout=grace)
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
