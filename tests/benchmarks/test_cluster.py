"""Batch work on a Dask cluster against the local process pool (issue 16).

Run with ``pytest tests/benchmarks/test_cluster.py --benchmark-only -s``.
Targets: 16 plate solves of unsolved.fits copies on a scheduler with two local
single-threaded workers take at most 10% longer than ``--jobs 2`` on this
machine; the per-task scheduling overhead (a task that does nothing, sent
through the same runner) is reported. Rounds alternate cluster and local runs
on fresh copies of the same files, so both see the same machine load.
"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / 'shared' / 'data'
INDEX_DIR = SHARED_DATA / 'astrometry'
FILES = 16
ROUNDS = 5


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    from conftest import two_worker_cluster

    yield from two_worker_cluster(tmp_path_factory)


def _panoptes() -> str:
    # The executable of this environment, by its direct path (no version-manager shim).
    return str(Path(sys.executable).parent / 'panoptes')


def _fresh_copies(workdir: Path) -> list[str]:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    names = []
    for number in range(FILES):
        target = workdir / f'frame{number:02d}.fits'
        shutil.copy(SHARED_DATA / 'unsolved.fits', target)
        names.append(str(target))
    return names


def _solve_seconds(names: list[str], *placement: str) -> float:
    argv = [_panoptes(), 'fits', 'solve', '--index-dir', str(INDEX_DIR), *placement, *names]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def test_sixteen_solves_on_two_workers_vs_jobs_2(benchmark, cluster, tmp_path):
    local_times = []

    def local_round_then_fresh_files():
        local_times.append(_solve_seconds(_fresh_copies(tmp_path / 'local'), '--jobs', '2'))
        return (_fresh_copies(tmp_path / 'cluster'),), {}

    def on_cluster(names):
        subprocess.run([_panoptes(), 'fits', 'solve', '--index-dir', str(INDEX_DIR),
                        '--scheduler', cluster.address, *names],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    benchmark.pedantic(on_cluster, setup=local_round_then_fresh_files, rounds=ROUNDS)
    cluster_median = benchmark.stats.stats.median
    local_median = statistics.median(local_times)
    overhead = cluster_median / local_median - 1
    benchmark.extra_info.update(local_jobs2_median_s=round(local_median, 3),
                                cluster_median_s=round(cluster_median, 3),
                                cluster_overhead=f'{overhead:+.1%}')
    print(f'\n16 solves: cluster (2 workers) {cluster_median:.2f} s, --jobs 2 '
          f'{local_median:.2f} s: overhead {overhead:+.1%} (target <= +10%)')


def test_scheduling_overhead_per_task(benchmark, cluster):
    from panoptes_cli.cluster import DaskRunner

    tasks = 400

    def run_noop_tasks():
        outcomes = list(DaskRunner(cluster.address).map_unordered(str, map(str, range(tasks))))
        assert len(outcomes) == tasks

    benchmark.pedantic(run_noop_tasks, rounds=5, warmup_rounds=1)
    per_task_ms = benchmark.stats.stats.median / tasks * 1000
    benchmark.extra_info['per_task_ms'] = round(per_task_ms, 3)
    print(f'\nscheduling overhead: {per_task_ms:.2f} ms per task '
          f'({tasks} no-op tasks, connect included)')
