"""Images on a full PANOPTES frame (5208x3476): ours against panoptes-utils 0.2.29.

Run with ``pytest tests/benchmarks/test_images.py --benchmark-only``. The
baseline runs in its own venv (``/tmp/baseline-venv``, or
``PANOPTES_BASELINE_VENV``) on the same FITS file, timed inside that process,
one call just before each round of ours (alternated, so both see the same
machine); its medians and the ratios are in each benchmark's ``extra_info`` and
printed at the end (``-s`` shows them). Targets (issue 6):
get_rgb_background >= 5x faster with the same background (mean and channel
levels within 0.5%); cr2_to_fits <= dcraw's bare decode + 0.3 s;
make_pretty_image <= 1.5 s.
"""

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.conftest import FULL_FRAME_HEIGHT as HEIGHT, FULL_FRAME_WIDTH as WIDTH
from benchmarks.conftest import BaselineWorker, alternate

CR2_MAKER = Path(__file__).resolve().parents[1] / 'cr2_maker.py'
SUMMARY = {}

# 0.2.29 in its own process: one timed call per request line, its seconds as the answer.
BASELINE_SCRIPT = r'''
import json, sys, time
import numpy as np
from panoptes.utils.images import bayer, focus, fits as fits_utils

fits_fn = sys.argv[1]
data = fits_utils.getdata(fits_fn)
calls = {
    'background': lambda: bayer.get_rgb_background(fits_fn),
    'vollath_F4': lambda: focus.vollath_F4(data),
    'get_rgb_data': lambda: bayer.get_rgb_data(data),
}
for line in sys.stdin:
    what = line.strip()
    if what == 'background_levels':
        backs = bayer.get_rgb_background(fits_fn, return_separate=True)
        masks = bayer.get_rgb_masks(data)
        full = np.ma.array([np.ma.array(b.background, mask=m) for b, m in zip(backs, masks)])
        print(json.dumps({'mean': float(full.sum(0).filled(0).mean()),
                          'levels': [float(b.background_median) for b in backs]}), flush=True)
        continue
    start = time.perf_counter()
    calls[what]()
    print(time.perf_counter() - start, flush=True)
'''


@pytest.fixture(scope='module')
def frame_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('images-bench')


@pytest.fixture(scope='module')
def fits_frame(full_frame_fits):
    return full_frame_fits('20160909T081152.fits', {
        'FILTER': 'RGGB', 'FIELD': 'Synthetic', 'EXPTIME': 120.0, 'DATE-OBS': '2016-09-09T08:11:52'},
        bayer_sky=True)


@pytest.fixture(scope='module')
def cr2_frame(frame_dir):
    """A full-size CR2 made by tests/cr2_maker.py (needs imagecodecs), tagged by exiftool."""
    pytest.importorskip('imagecodecs', reason='tests/cr2_maker.py needs imagecodecs')
    for program in ('exiftool', 'dcraw'):
        if shutil.which(program) is None:
            pytest.skip(f'{program} is not installed')
    path = frame_dir / 'full.cr2'
    subprocess.run([sys.executable, str(CR2_MAKER), str(path),
                    '--height', str(HEIGHT), '--width', str(WIDTH)], check=True)
    subprocess.run(['exiftool', '-q', '-overwrite_original', '-ExposureTime=120', '-ISO=100',
                    '-DateTimeOriginal=2016:09:09 08:11:52', '-SerialNumber=12345678',
                    str(path)], check=True)
    return path


@pytest.fixture(scope='module')
def baseline(fits_frame):
    """0.2.29 with the frame loaded: ``baseline.ask(what)`` times one call of it."""
    worker = BaselineWorker(BASELINE_SCRIPT, args=[fits_frame])
    yield worker
    worker.close()


def against_baseline(benchmark, baseline, what: str, ours, rounds: int) -> float:
    """Benchmark ``ours``, one baseline call of ``what`` before each round; the baseline's median."""
    return alternate(benchmark, ours, lambda: float(baseline.ask(what)), rounds=rounds)


def record(benchmark, name, baseline_s=None, **extra):
    ours = benchmark.stats.stats.median
    benchmark.extra_info['median_s'] = ours
    if baseline_s is not None:
        benchmark.extra_info['baseline_median_s'] = baseline_s
        benchmark.extra_info['speedup'] = baseline_s / ours
    benchmark.extra_info.update(extra)
    SUMMARY[name] = dict(benchmark.extra_info)


@pytest.mark.benchmark(group='images-background')
def test_get_rgb_background(benchmark, fits_frame, baseline):
    from panoptes_cli.images.bayer import get_rgb_background
    from panoptes_cli.images.fits import getdata

    baseline_s = against_baseline(benchmark, baseline, 'background',
                                  lambda: get_rgb_background(fits_frame), rounds=5)
    reference = json.loads(baseline.ask('background_levels'))
    full = get_rgb_background(fits_frame)
    backs = get_rgb_background(fits_frame, return_separate=True)
    levels = [float(b.background_median) for b in backs]
    mean_error = float(abs(full.mean() - reference['mean']) / reference['mean'])
    level_errors = [abs(a - b) / b for a, b in zip(levels, reference['levels'])]
    record(benchmark, 'get_rgb_background', baseline_s,
           mean=float(full.mean()), baseline_mean=reference['mean'],
           mean_rel_error=mean_error, max_level_rel_error=max(level_errors))
    assert full.shape == getdata(fits_frame).shape
    # Same background (a correctness check, not a timing).
    assert mean_error < 0.005 and max(level_errors) < 0.005


@pytest.mark.parametrize('name', ['vollath_F4', 'get_rgb_data'])
def test_on_the_data(benchmark, fits_frame, baseline, name):
    from panoptes_cli.images import bayer, focus
    from panoptes_cli.images.fits import getdata

    function = {'vollath_F4': focus.vollath_F4, 'get_rgb_data': bayer.get_rgb_data}[name]
    data = getdata(fits_frame)
    benchmark.group = f'images-{name}'
    record(benchmark, name, against_baseline(benchmark, baseline, name, lambda: function(data),
                                             rounds=15))


@pytest.mark.benchmark(group='images-cr2_to_fits')
def test_cr2_to_fits(benchmark, cr2_frame, frame_dir):
    from panoptes_cli.images.cr2 import cr2_to_fits

    def dcraw_decode():
        start = time.perf_counter()
        subprocess.run(['dcraw', '-t', '0', '-D', '-4', '-c', str(cr2_frame)],
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start

    dcraw_decode()
    dcraw_s = statistics.median(dcraw_decode() for _ in range(7))
    target = frame_dir / 'full.fits'
    benchmark.pedantic(cr2_to_fits, args=(cr2_frame, target), kwargs={'overwrite': True},
                       rounds=7, warmup_rounds=1)
    ours = benchmark.stats.stats.median
    record(benchmark, 'cr2_to_fits', dcraw_bare_decode_s=dcraw_s, over_dcraw_s=ours - dcraw_s)


@pytest.mark.benchmark(group='images-make_pretty_image')
def test_make_pretty_image(benchmark, fits_frame):
    from panoptes_cli.images import make_pretty_image

    benchmark.pedantic(make_pretty_image, args=(fits_frame,), rounds=7, warmup_rounds=1)
    record(benchmark, 'make_pretty_image')


def teardown_module():
    if SUMMARY:
        print('\nimages benchmark summary (medians, seconds):')
        for name, info in SUMMARY.items():
            shown = {key: (float(f'{value:.4g}') if isinstance(value, float) else value)
                     for key, value in info.items()}
            print(f'  {name}: {shown}')
