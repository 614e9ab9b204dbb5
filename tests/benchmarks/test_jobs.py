"""-j/--jobs on the batch commands: fits pack and image pretty of full frames, -j 2 against -j 1.

Four synthetic full frames (5208x3476 uint16), the same files in every round; the
command runs as a user runs it (the installed executable, stdout to a pipe). Rounds
alternate -j 1 and -j 2; ``extra_info`` has the -j 1 median and the ratio.

    pytest tests/benchmarks/test_jobs.py --benchmark-only
"""

import pytest

from benchmarks.conftest import alternate, ours_bin, run_quiet

FRAMES = 4


@pytest.fixture(scope='module')
def frames(full_frame_fits):
    first = full_frame_fits('frame0.fits', {'IMAGEID': 'PAN000_000000_20240101T000000'},
                            bayer_sky=True)
    paths = [first]
    for number in range(1, FRAMES):
        copy = first.with_name(f'frame{number}.fits')
        copy.write_bytes(first.read_bytes())
        paths.append(copy)
    return paths


def _run(*args):
    return lambda: run_quiet([ours_bin('panoptes'), *map(str, args)])


@pytest.mark.benchmark(group='jobs: fits pack 4 full frames')
def test_pack_jobs2_against_jobs1(benchmark, frames):
    def pack(jobs):
        return _run('fits', 'pack', '--keep-original', '--overwrite', '-j', jobs, *frames)

    alternate(benchmark, pack(2), pack(1), rounds=5)


@pytest.mark.benchmark(group='jobs: image pretty 4 full frames')
def test_pretty_jobs2_against_jobs1(benchmark, frames):
    def pretty(jobs):
        return _run('image', 'pretty', '--overwrite', '-j', jobs, *frames)

    alternate(benchmark, pretty(2), pretty(1), rounds=5)
