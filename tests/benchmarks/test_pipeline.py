"""The night's pipeline on 20 full frames: ``panoptes image watch --once --jobs 2`` vs 0.2.29.

Run with ``pytest tests/benchmarks/test_pipeline.py --benchmark-only -s``. A
round takes 20 full-size synthetic CR2s (5208x3476, tests/cr2_maker.py, tagged
by exiftool) through convert, pack and pretty, and 20 copies of
``unsolved.fits`` through solve with the shipped index, fresh copies each round:

- ours: two ``panoptes image watch --once --jobs 2`` processes (``--steps
  convert,pack,pretty`` on the CR2s, ``--steps solve`` on the FITS copies);
- 0.2.29: the same steps with its Python API in the baseline venv, one frame
  after another: ``cr2_to_fits``, ``make_pretty_image`` (of the FITS), ``fpack``;
  ``get_solve_field``.

Rounds alternate ours and the baseline (``PANOPTES_PIPELINE_ROUNDS``, default 3).
Frames/min is 20 over a round's wall-clock time. The per-step medians come from
our NDJSON events and from the baseline's own timings; the peak RSS per job is
the largest VmHWM of the watch's worker processes. Targets (issue 14): >= 60
frames/min and >= 4x 0.2.29 sequential.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.conftest import FULL_FRAME_HEIGHT as HEIGHT, FULL_FRAME_WIDTH as WIDTH, ours_bin

BASELINE_VENV = Path(os.environ.get('PANOPTES_BASELINE_VENV', '/tmp/baseline-venv'))
CR2_MAKER = Path(__file__).resolve().parents[1] / 'cr2_maker.py'
FRAMES = 20
ROUNDS = int(os.environ.get('PANOPTES_PIPELINE_ROUNDS', '3'))

BASELINE_SCRIPT = r'''
import json, sys, time
from pathlib import Path
from panoptes.utils.images import cr2, fits, make_pretty_image

cr2_dir, fits_dir, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
steps = {'convert': [], 'pretty': [], 'pack': [], 'solve': []}
solve_opts = ['--guess-scale', '--no-verify', '--crpix-center', '--temp-axy', '--index-xyls',
              'none', '--solved', 'none', '--match', 'none', '--rdls', 'none', '--corr', 'none',
              '--downsample', '2', '--no-plots', '--config', config]

def timed(step, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    steps[step].append(time.perf_counter() - start)
    return result

start = time.perf_counter()
for raw in sorted(cr2_dir.glob('*.cr2')):
    fits_fn = timed('convert', cr2.cr2_to_fits, str(raw))
    timed('pretty', make_pretty_image, fits_fn)
    timed('pack', fits.fpack, fits_fn)
for frame in sorted(fits_dir.glob('*.fits')):
    info = timed('solve', fits.get_solve_field, str(frame), timeout=60, solve_opts=solve_opts)
    assert 'ra_center' in info or 'CRVAL1' in info, info
print(json.dumps({'seconds': time.perf_counter() - start, 'steps': steps}))
'''


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """One full-size tagged CR2 (copied 20 times per round), unsolved.fits and a backend config."""
    pytest.importorskip('imagecodecs', reason='tests/cr2_maker.py needs imagecodecs')
    for program in ('exiftool', 'dcraw', 'fpack', 'solve-field'):
        if shutil.which(program) is None:
            pytest.fail(f'{program} is not installed (install.sh test installs it)')
    from conftest import SHARED_DATA as shared_data

    directory = tmp_path_factory.mktemp('pipeline-bench')
    cr2 = directory / 'frame.cr2'
    subprocess.run([sys.executable, str(CR2_MAKER), str(cr2), '--height', str(HEIGHT),
                    '--width', str(WIDTH)], check=True)
    subprocess.run(['exiftool', '-q', '-overwrite_original', '-ExposureTime=120', '-ISO=100',
                    '-DateTimeOriginal=2016:09:09 08:11:52', '-SerialNumber=12345678',
                    str(cr2)], check=True)
    config = directory / 'backend.cfg'
    config.write_text(f"index {shared_data / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'}\n")
    return directory, cr2, shared_data / 'unsolved.fits', config


def _fresh_round(sources, name):
    """Copy the 20 CR2s and 20 FITS into new directories, dated in the past (so settled)."""
    directory, cr2, fits_frame, _ = sources
    cr2_dir, fits_dir = directory / name / 'cr2', directory / name / 'fits'
    cr2_dir.mkdir(parents=True)
    fits_dir.mkdir(parents=True)
    for number in range(FRAMES):
        stamp = f'20160909T08{number:02d}00'
        for source, target in ((cr2, cr2_dir / f'{stamp}.cr2'), (fits_frame, fits_dir / f'{stamp}.fits')):
            shutil.copy(source, target)
            os.chmod(target, 0o644)
            os.utime(target, (time.time() - 60,) * 2)
    return cr2_dir, fits_dir


class _PeakMemory:
    """Sample the watch's worker processes' peak RSS (VmHWM) while it runs."""

    def __init__(self, process):
        self.process = process
        self.peaks = {}
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.process.poll() is None:
            for pid in self._children(self.process.pid):
                try:
                    status = Path(f'/proc/{pid}/status').read_text()
                    name = Path(f'/proc/{pid}/comm').read_text().strip()
                except OSError:
                    continue
                if not name.startswith(('python', 'panoptes')):
                    continue  # solve-field, exiftool...: not a job's own memory
                for line in status.splitlines():
                    if line.startswith('VmHWM:'):
                        kib = int(line.split()[1])
                        self.peaks[pid] = max(self.peaks.get(pid, 0), kib)
            time.sleep(0.05)

    @staticmethod
    def _children(pid):
        try:
            return [int(child) for child in
                    Path(f'/proc/{pid}/task/{pid}/children').read_text().split()]
        except OSError:
            return []

    def peak_mib(self):
        self.thread.join()
        return max(self.peaks.values(), default=0) / 1024


def _watch(args):
    process = subprocess.Popen([ours_bin('panoptes'), 'image', 'watch', '--once',
                                '--jobs', '2', *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = _PeakMemory(process)
    out, err = process.communicate(timeout=1800)
    assert process.returncode == 0, err[-2000:]
    return [json.loads(line) for line in out.splitlines()], memory.peak_mib()


def _ours(sources, name):
    cr2_dir, fits_dir = _fresh_round(sources, name)
    start = time.perf_counter()
    events, peak_cr2 = _watch(['--steps', 'convert,pack,pretty', cr2_dir])
    solves, peak_solve = _watch(['--steps', 'solve', '--config', sources[3], fits_dir])
    seconds = time.perf_counter() - start
    events += solves
    assert len(events) == FRAMES * 4 and not [e for e in events if 'error' in e]
    steps = {}
    for event in events:
        steps.setdefault(event['step'], []).append(event['seconds'])
    return seconds, steps, max(peak_cr2, peak_solve)


def _baseline(sources, name):
    python = BASELINE_VENV / 'bin' / 'python'
    if not python.exists():
        pytest.skip(f'baseline panoptes-utils 0.2.29 is not installed in {BASELINE_VENV}')
    cr2_dir, fits_dir = _fresh_round(sources, name)
    done = subprocess.run([str(python), '-c', BASELINE_SCRIPT, str(cr2_dir), str(fits_dir),
                           str(sources[3])], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    return result['seconds'], result['steps']


@pytest.mark.benchmark(group='pipeline')
def test_image_watch_pipeline(benchmark, sources):
    ours, theirs, our_steps, their_steps, peaks = [], [], {}, {}, []

    def one_round():
        number = len(ours)
        seconds, steps, peak = _ours(sources, f'ours-{number}')
        ours.append(seconds)
        peaks.append(peak)
        for step, values in steps.items():
            our_steps.setdefault(step, []).extend(values)
        # Alternate: the baseline right after, on the same machine state.
        seconds, steps = _baseline(sources, f'baseline-{number}')
        theirs.append(seconds)
        for step, values in steps.items():
            their_steps.setdefault(step, []).extend(values)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    info = {
        'frames': FRAMES, 'rounds': ROUNDS,
        'ours_round_s': ours, 'baseline_round_s': theirs,
        'ours_frames_per_min': FRAMES * 60 / ours_median,
        'baseline_frames_per_min': FRAMES * 60 / theirs_median,
        'speedup': theirs_median / ours_median,
        'ours_step_median_s': {k: statistics.median(v) for k, v in our_steps.items()},
        'baseline_step_median_s': {k: statistics.median(v) for k, v in their_steps.items()},
        'peak_rss_per_job_mib': max(peaks),
    }
    benchmark.extra_info.update(info)
    print('\n' + json.dumps(info, indent=1))
