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
