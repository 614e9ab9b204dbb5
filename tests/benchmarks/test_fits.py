"""FITS packing, header reading and plate solving: ours against the bare tools.

Run with ``pytest tests/benchmarks/test_fits.py --benchmark-only -s``. The
machines are noisy, so each comparison is interleaved: before every round of
ours, the bare tool runs on a fresh copy of the same input. The medians and
their ratios are printed at the end and kept in each benchmark's
``extra_info``. Targets (issue 5):

- pack+unpack of a full frame (5208x3476 uint16) through panoptes_cli vs the
  bare ``fpack``/``funpack`` binaries: <= 1.1x (the astropy fallback reported);
- ``panoptes fits header`` on 200 files as one process vs astropy's
  ``fitsheader``: <= 1x;
- solving unsolved.fits: our overhead over a bare ``solve-field`` with the
  same options: <= 10%; ``--jobs 2`` on 8 copies vs one at a time.

panoptes-utils 0.2.29 (``/tmp/baseline-venv`` or ``PANOPTES_BASELINE_VENV``)
is timed in its own process on the same files where it has the function, in the
same rounds: each round runs the bare tool, then 0.2.29, then ours.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from benchmarks.conftest import BaselineWorker, alternate, ours_bin, run_quiet

BASELINE_VENV = Path(os.environ.get('PANOPTES_BASELINE_VENV', '/tmp/baseline-venv'))
SHARED_DATA = Path(__file__).resolve().parents[3] / 'shared' / 'data'
INDEX = SHARED_DATA / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'
MEDIANS = {}

# 0.2.29 in its own process: per request line, copy the source and time one pack+unpack or
# solve of the copy; the answer is the seconds it took.
BASELINE_SCRIPT = r'''
import shutil, sys, time
from panoptes.utils.images import fits as fits_utils

for line in sys.stdin:
    what, source, work, config = line.split()
    shutil.copy(source, work)
    start = time.perf_counter()
    if what == 'pack':
        fits_utils.funpack(fits_utils.fpack(work))
    else:
        fits_utils.get_solve_field(work, skip_solved=False, **{'--config': config})
    print(time.perf_counter() - start, flush=True)
'''


def interleaved(benchmark, name: str, ours, others: dict, prepare, rounds: int):
    """Benchmark ``ours`` with each of ``others`` (name -> callable) run before each round.

    On a noisy machine only interleaved runs compare fairly (see ``alternate``);
    the medians go into MEDIANS and the ratios into ``extra_info``.
    """
    medians = alternate(benchmark, ours, others, rounds, prepare)
    MEDIANS[name] = benchmark.stats.stats.median
    for other, median in medians.items():
        MEDIANS[other] = median
        benchmark.extra_info[f'{other}_median_s'] = round(median, 4)
        benchmark.extra_info[f'ratio_vs_{other}'] = round(MEDIANS[name] / median, 3)


@pytest.fixture(scope='module')
def baseline():
    """0.2.29's fits module in its own process, or None when it is not installed."""
    if not (BASELINE_VENV / 'bin' / 'python').exists():
        yield None
        return
    worker = BaselineWorker(BASELINE_SCRIPT)
    yield worker
    worker.close()


def with_baseline(others: dict, baseline, name: str, what: str, source: Path, work: Path,
                  config: Path) -> dict:
    """Add 0.2.29's round of ``what`` on a copy of ``source`` to ``others``, if it is installed."""
    if baseline is not None:
        others[name] = lambda: float(baseline.ask(what, source, work, config))
    return others


@pytest.fixture(scope='module', autouse=True)
def summary():
    yield
    if not MEDIANS:
        return
    print('\n\nmedians (s):')
    for name, median in MEDIANS.items():
        print(f'  {name:32s} {median:8.3f}')
    pairs = [
        ('pack_unpack_api', 'pack_unpack_bare'), ('pack_unpack_cli', 'pack_unpack_bare_cli'),
        ('pack_unpack_astropy', 'pack_unpack_bare_astropy'),
        ('pack_unpack_baseline', 'pack_unpack_bare'), ('header_cli', 'header_fitsheader'),
        ('solve_api', 'solve_bare'), ('solve_cli', 'solve_bare_cli'),
        ('solve_baseline', 'solve_bare'), ('solve_8_jobs2', 'solve_8_jobs1'),
    ]
    print('ratios:')
    for name, against in pairs:
        if name in MEDIANS and against in MEDIANS:
            print(f'  {name} / {against} = {MEDIANS[name] / MEDIANS[against]:.3f}')


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp('fits-bench')


@pytest.fixture(scope='module')
def frame(full_frame_fits):
    return full_frame_fits('frame-master.fits', {'IMAGEID': 'PAN000_000000_20240101T000000'})


@pytest.fixture(scope='module')
def config(workdir):
    path = workdir / 'backend.cfg'
    path.write_text(f'index {INDEX}\n')
    return path


def _copy_to(source: Path, *targets: Path):
    def setup():
        for target in targets:
            for stale in (target, Path(f'{target}.fz')):
                stale.unlink(missing_ok=True)
            shutil.copy(source, target)
        # Write the copies out now, so that no timed fsync pays for the set-up's writes.
        os.sync()
    return setup


# -- pack + unpack of a full frame -------------------------------------------------------------

def _bare_pack_unpack(work: Path):
    fpack, funpack = shutil.which('fpack'), shutil.which('funpack')
    if not (fpack and funpack):
        pytest.skip('fpack/funpack not installed')

    def run():
        subprocess.run([fpack, '-D', '-Y', str(work)], check=True)
        subprocess.run([funpack, '-D', f'{work}.fz'], check=True)
    return run


@pytest.mark.benchmark(group='pack+unpack full frame')
def test_pack_unpack_api(benchmark, frame, workdir, config, baseline):
    from panoptes_cli.images import fits

    work, bare = workdir / 'api.fits', workdir / 'bare-api.fits'
    prepare = _copy_to(frame, work, bare)
    others = with_baseline({'pack_unpack_bare': _bare_pack_unpack(bare)}, baseline,
                           'pack_unpack_baseline', 'pack', frame, workdir / 'baseline.fits', config)
    interleaved(benchmark, 'pack_unpack_api', lambda: fits.funpack(fits.fpack(work)), others,
                prepare, rounds=9)


@pytest.mark.benchmark(group='pack+unpack full frame')
def test_pack_unpack_cli(benchmark, frame, workdir):
    panoptes = ours_bin('panoptes')
    work, bare = workdir / 'cli.fits', workdir / 'bare-cli.fits'

    def run():
        subprocess.run([panoptes, 'fits', 'pack', str(work)], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([panoptes, 'fits', 'unpack', f'{work}.fz'], check=True,
                       stdout=subprocess.DEVNULL)

    interleaved(benchmark, 'pack_unpack_cli', run,
                {'pack_unpack_bare_cli': _bare_pack_unpack(bare)}, _copy_to(frame, work, bare),
                rounds=9)


@pytest.mark.benchmark(group='pack+unpack full frame')
def test_pack_unpack_astropy(benchmark, frame, workdir, monkeypatch):
    from panoptes_cli.images import fits

    work, bare = workdir / 'astropy.fits', workdir / 'bare-astropy.fits'
    bare_run = _bare_pack_unpack(bare)
    monkeypatch.setenv('PATH', '/nonexistent')
    interleaved(benchmark, 'pack_unpack_astropy', lambda: fits.funpack(fits.fpack(work)),
                {'pack_unpack_bare_astropy': bare_run}, _copy_to(frame, work, bare), rounds=7)


# -- header of 200 files, one process ----------------------------------------------------------

@pytest.fixture(scope='module')
def many_files(workdir):
    directory = workdir / 'headers'
    directory.mkdir()
    paths = []
    for n in range(200):
        path = directory / f'frame{n:03d}.fits'
        shutil.copy(SHARED_DATA / 'tiny.fits', path)
        paths.append(str(path))
    return paths


@pytest.mark.benchmark(group='header of 200 files')
def test_header_cli(benchmark, many_files):
    fitsheader = shutil.which('fitsheader') or pytest.skip('astropy fitsheader not installed')
    argv = [ours_bin('panoptes'), 'fits', 'header', *many_files]
    interleaved(benchmark, 'header_cli', lambda: run_quiet(argv),
                {'header_fitsheader': lambda: run_quiet([fitsheader, *many_files])}, lambda: None,
                rounds=9)


# -- solving unsolved.fits ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def solve_args(workdir, config):
    """The exact solve-field command line get_solve_field runs for unsolved.fits."""
    from panoptes_cli.images import fits

    if not shutil.which('solve-field'):
        pytest.skip('solve-field not installed')
    probe = workdir / 'probe.fits'
    shutil.copy(SHARED_DATA / 'unsolved.fits', probe)
    with fits.solve_field(probe, **{'--config': config}) as process:
        args, private = list(process.args), str(process.workdir)
        process.communicate()
    return args, private, str(probe)


def _bare_solve(solve_args, work: Path):
    args, private, _ = solve_args

    def run():
        directory = tempfile.mkdtemp(prefix='bench-solve-')
        try:
            argv = [arg.replace(private, directory) for arg in args[:-1]] + [str(work)]
            completed = subprocess.run(argv, check=True, capture_output=True)
            assert b'solved with index' in completed.stdout
        finally:
            shutil.rmtree(directory)
    return run


@pytest.mark.benchmark(group='solve unsolved.fits')
def test_solve_api(benchmark, solve_args, workdir, config, baseline):
    from panoptes_cli.images import fits

    work, bare = workdir / 'solve-api.fits', workdir / 'solve-bare-api.fits'
    others = with_baseline({'solve_bare': _bare_solve(solve_args, bare)}, baseline,
                           'solve_baseline', 'solve', SHARED_DATA / 'unsolved.fits',
                           workdir / 'solve-baseline.fits', config)
    interleaved(benchmark, 'solve_api', lambda: fits.get_solve_field(work, **{'--config': config}),
                others, _copy_to(SHARED_DATA / 'unsolved.fits', work, bare), rounds=9)


@pytest.mark.benchmark(group='solve unsolved.fits')
def test_solve_cli(benchmark, solve_args, workdir, config):
    work, bare = workdir / 'solve-cli.fits', workdir / 'solve-bare-cli.fits'
    argv = [ours_bin('panoptes'), 'fits', 'solve', '--config', str(config), str(work)]
    interleaved(benchmark, 'solve_cli', lambda: run_quiet(argv),
                {'solve_bare_cli': _bare_solve(solve_args, bare)},
                _copy_to(SHARED_DATA / 'unsolved.fits', work, bare), rounds=9)


@pytest.mark.benchmark(group='solve 8 copies')
def test_solve_eight_jobs2(benchmark, solve_args, workdir, config):
    directory = workdir / 'eight'
    directory.mkdir()
    paths = [directory / f'unsolved{n}.fits' for n in range(8)]

    def argv(jobs):
        return [ours_bin('panoptes'), 'fits', 'solve', '--jobs', str(jobs), '--config',
                str(config), *map(str, paths)]

    interleaved(benchmark, 'solve_8_jobs2', lambda: run_quiet(argv(2)),
                {'solve_8_jobs1': lambda: run_quiet(argv(1))},
                _copy_to(SHARED_DATA / 'unsolved.fits', *paths), rounds=3)
