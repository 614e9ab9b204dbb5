"""Images on a full PANOPTES frame (5208x3476): ours against panoptes-utils 0.2.29.

Run with ``pytest tests/benchmarks/test_images.py --benchmark-only``. The
baseline runs in its own venv (``/tmp/baseline-venv``, or
``PANOPTES_BASELINE_VENV``) on the same FITS file, timed inside that process,
in the same pytest run; its medians and the ratios are in each benchmark's
``extra_info`` and printed at the end (``-s`` shows them). Targets (issue 6):
get_rgb_background >= 5x faster with the same background (mean and channel
levels within 0.5%); cr2_to_fits <= dcraw's bare decode + 0.3 s;
make_pretty_image <= 1.5 s.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

# As in conftest.py; read here directly so this module does not depend on which
# conftest module Python finds under that name.
BASELINE_VENV = Path(os.environ.get('PANOPTES_BASELINE_VENV', '/tmp/baseline-venv'))
from benchmarks.conftest import FULL_FRAME_HEIGHT as HEIGHT, FULL_FRAME_WIDTH as WIDTH
CR2_MAKER = Path(__file__).resolve().parents[1] / 'cr2_maker.py'
SUMMARY = {}

BASELINE_SCRIPT = r'''
import json, statistics, sys, time
import numpy as np
from panoptes.utils.images import bayer, focus, fits as fits_utils

fits_fn, what = sys.argv[1], sys.argv[2]
data = fits_utils.getdata(fits_fn)

def median_time(function, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

result = {}
if what == 'background':
    result['median_s'] = median_time(lambda: bayer.get_rgb_background(fits_fn), 3)
    backs = bayer.get_rgb_background(fits_fn, return_separate=True)
    masks = bayer.get_rgb_masks(data)
    full = np.ma.array([np.ma.array(b.background, mask=m) for b, m in zip(backs, masks)])
    result['mean'] = float(full.sum(0).filled(0).mean())
    result['levels'] = [float(b.background_median) for b in backs]
elif what == 'vollath_F4':
    result['median_s'] = median_time(lambda: focus.vollath_F4(data), 7)
elif what == 'get_rgb_data':
    result['median_s'] = median_time(lambda: bayer.get_rgb_data(data), 7)
print(json.dumps(result))
'''


@pytest.fixture(scope='module')
def frame_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('images-bench')


@pytest.fixture(scope='module')
def fits_frame(frame_dir, make_full_frame):
    from panoptes_cli.images.fits import write_fits

    path = frame_dir / '20160909T081152.fits'
    write_fits(make_full_frame(bayer_sky=True), {'FILTER': 'RGGB', 'FIELD': 'Synthetic', 'EXPTIME': 120.0,
                              'DATE-OBS': '2016-09-09T08:11:52'}, path)
    return path


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


def baseline(fits_frame, what: str) -> dict:
    python = BASELINE_VENV / 'bin' / 'python'
    if not python.exists():
        pytest.skip(f'baseline panoptes-utils 0.2.29 is not installed in {BASELINE_VENV}')
    done = subprocess.run([str(python), '-c', BASELINE_SCRIPT, str(fits_frame), what],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def record(benchmark, name, baseline_s=None, **extra):
    ours = benchmark.stats.stats.median
    benchmark.extra_info['median_s'] = ours
    if baseline_s is not None:
        benchmark.extra_info['baseline_median_s'] = baseline_s
        benchmark.extra_info['speedup'] = baseline_s / ours
    benchmark.extra_info.update(extra)
    SUMMARY[name] = dict(benchmark.extra_info)


@pytest.mark.benchmark(group='images-background')
def test_get_rgb_background(benchmark, fits_frame):
    from panoptes_cli.images.bayer import get_rgb_background
    from panoptes_cli.images.fits import getdata

    reference = baseline(fits_frame, 'background')
    full = benchmark.pedantic(get_rgb_background, args=(fits_frame,), rounds=5,
                              warmup_rounds=1)
    backs = get_rgb_background(fits_frame, return_separate=True)
    levels = [float(b.background_median) for b in backs]
    mean_error = float(abs(full.mean() - reference['mean']) / reference['mean'])
    level_errors = [abs(a - b) / b for a, b in zip(levels, reference['levels'])]
    record(benchmark, 'get_rgb_background', reference['median_s'],
           mean=float(full.mean()), baseline_mean=reference['mean'],
           mean_rel_error=mean_error, max_level_rel_error=max(level_errors))
    assert full.shape == getdata(fits_frame).shape
    # Same background (a correctness check, not a timing).
    assert mean_error < 0.005 and max(level_errors) < 0.005


@pytest.mark.benchmark(group='images-vollath_F4')
def test_vollath_f4(benchmark, fits_frame):
    from panoptes_cli.images.fits import getdata
    from panoptes_cli.images.focus import vollath_F4

    data = getdata(fits_frame)
    reference = baseline(fits_frame, 'vollath_F4')
    benchmark.pedantic(vollath_F4, args=(data,), rounds=15, warmup_rounds=1)
    record(benchmark, 'vollath_F4', reference['median_s'])


@pytest.mark.benchmark(group='images-get_rgb_data')
def test_get_rgb_data(benchmark, fits_frame):
    from panoptes_cli.images.bayer import get_rgb_data
    from panoptes_cli.images.fits import getdata

    data = getdata(fits_frame)
    reference = baseline(fits_frame, 'get_rgb_data')
    benchmark.pedantic(get_rgb_data, args=(data,), rounds=15, warmup_rounds=1)
    record(benchmark, 'get_rgb_data', reference['median_s'])


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
