"""Helpers for benchmarks: timing whole processes, the 0.2.29 baseline, fair comparisons.

A side-by-side comparison with 0.2.29 is fair only when both run on the same machine
at the same moment: :func:`alternate` runs the baseline before each round of ours,
and both executables are called by their direct paths (:func:`ours_bin`,
``baseline_bin``), never through a version manager's shim on PATH.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BASELINE_VENV


def ours_bin(name: str) -> str:
    """Return the path of our program ``name`` in the running Python's own venv.

    PATH may lead to a version manager's shim instead (pyenv's adds ~76 ms a call).
    """
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f'{path} is missing: install panoptes-cli into this venv (pip install -e .)')
    return str(path)


def alternate(benchmark, ours, theirs, rounds: int, prepare=lambda: None,
              warmup_rounds: int = 1):
    """Benchmark ``ours``, running ``theirs`` just before each of its rounds; return theirs' median.

    ``theirs`` is a callable, or a dict of them by name (each runs every round; a
    dict of medians is returned). Each returns the seconds it measured itself
    (e.g. inside the baseline's process), or None to be timed here. ``prepare()``
    runs before each run, e.g. to lay down a fresh copy of the input. Medians
    leave the warm-up rounds out; with a single ``theirs``, its median and the
    ratio go into ``extra_info``.
    """
    others = theirs if isinstance(theirs, dict) else {None: theirs}
    times = {name: [] for name in others}

    def setup():
        for name, run in others.items():
            prepare()
            start = time.perf_counter()
            measured = run()
            times[name].append(measured if measured is not None else time.perf_counter() - start)
        prepare()

    benchmark.pedantic(ours, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds)
    medians = {name: statistics.median(values[warmup_rounds:]) for name, values in times.items()}
    if not isinstance(theirs, dict):
        benchmark.extra_info['baseline_median_s'] = medians[None]
        benchmark.extra_info['baseline_over_ours'] = medians[None] / benchmark.stats.stats.median
        return medians[None]
    return medians


class BaselineWorker:
    """A Python process of the 0.2.29 venv running ``script``: one request a line, one answer a line."""

    def __init__(self, script: str, args=(), env: dict | None = None):
        python = BASELINE_VENV / 'bin' / 'python'
        if not python.exists():
            pytest.skip(f'baseline panoptes-utils 0.2.29 is not installed in {BASELINE_VENV}')
        self.process = subprocess.Popen([str(python), '-c', script, *map(str, args)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=env)

    def ask(self, *words) -> str:
        """Send one request line; return the answer line (without its end)."""
        self.process.stdin.write(' '.join(map(str, words)) + '\n')
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f'the baseline worker died (status {self.process.wait(10)})')
        return answer.rstrip('\n')

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def baseline_bin():
    """Return a function giving the path of a program in the 0.2.29 baseline venv, or skip."""

    def find(name: str) -> str:
        path = BASELINE_VENV / 'bin' / name
        if not path.exists():
            pytest.skip(f'baseline panoptes-utils 0.2.29 is not installed in {BASELINE_VENV}')
        return str(path)

    return find


def run_quiet(argv, env=None) -> None:
    """Run a whole command line, its output thrown away; fail if it fails."""
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


@pytest.fixture
def run_process(benchmark):
    """Benchmark a whole command line as a process, 15 rounds.

    With ``versus`` (another command line, e.g. 0.2.29's), that one runs before
    each round (see :func:`alternate`) and its median is returned.
    """

    def run(argv, rounds=15, env=None, versus=None, versus_env=None):
        full_env = dict(os.environ, **(env or {}))
        argv = [ours_bin(argv[0]) if argv[0] == 'panoptes' else argv[0], *argv[1:]]
        if versus is None:
            benchmark.pedantic(run_quiet, args=(argv, full_env), rounds=rounds, warmup_rounds=2)
            return None
        their_env = dict(os.environ, **(versus_env or {}))
        return alternate(benchmark, lambda: run_quiet(argv, full_env),
                         lambda: run_quiet(versus, their_env), rounds, warmup_rounds=2)

    return run


# A full PANOPTES DSLR frame, rows x columns.
FULL_FRAME_HEIGHT, FULL_FRAME_WIDTH = 3476, 5208


@pytest.fixture(scope='session')
def make_full_frame():
    """Return a function making a synthetic full frame (5208x3476 uint16, 14-bit).

    Sky level and gradient, Poisson noise and 400 stars; ``bayer_sky=True``
    gives the red and blue pixels of an RGGB sensor their own, lower sky levels.
    """
    import numpy as np

    def make(bayer_sky: bool = False):
        rng = np.random.default_rng(42)
        sky = np.full((FULL_FRAME_HEIGHT, FULL_FRAME_WIDTH), 2000.0)
        if bayer_sky:
            sky[1::2, 0::2] *= 0.96  # red
            sky[0::2, 1::2] *= 0.975  # blue
        sky += (np.linspace(0, 120, FULL_FRAME_WIDTH)[None, :]
                + np.linspace(0, 60, FULL_FRAME_HEIGHT)[:, None])
        frame = rng.poisson(sky).astype(np.float64)
        yy, xx = np.mgrid[-8:9, -8:9]
        for _ in range(400):
            y = int(rng.uniform(10, FULL_FRAME_HEIGHT - 10))
            x = int(rng.uniform(10, FULL_FRAME_WIDTH - 10))
            frame[y - 8:y + 9, x - 8:x + 9] += rng.uniform(500, 20000) * np.exp(
                -(yy**2 + xx**2) / (2 * 1.6**2))
        return np.clip(frame, 0, 2**14 - 1).astype(np.uint16)

    return make


@pytest.fixture(scope='session')
def full_frame_fits(tmp_path_factory, make_full_frame):
    """Return a function writing a synthetic full frame with the given header cards to a FITS file."""
    from panoptes_cli.images.fits import write_fits

    def write(name: str, header: dict, bayer_sky: bool = False) -> Path:
        path = tmp_path_factory.mktemp('full-frame') / name
        write_fits(make_full_frame(bayer_sky=bayer_sky), header, path)
        return path

    return write
