"""Helpers for benchmarks: timing whole processes and finding the 0.2.29 baseline."""

import os
import shutil
import subprocess

import pytest

from conftest import BASELINE_VENV


@pytest.fixture
def baseline_bin():
    """Return a function giving the path of a program in the 0.2.29 baseline venv, or skip."""

    def find(name: str) -> str:
        path = BASELINE_VENV / 'bin' / name
        if not path.exists():
            pytest.skip(f'baseline panoptes-utils 0.2.29 is not installed in {BASELINE_VENV}')
        return str(path)

    return find


@pytest.fixture
def run_process(benchmark):
    """Benchmark a whole command line as a process, 15 rounds."""

    def run(argv, rounds=15, env=None):
        full_env = dict(os.environ, **(env or {}))
        argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]

        def once():
            subprocess.run(argv, env=full_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)

        return benchmark.pedantic(once, rounds=rounds, warmup_rounds=2)

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
