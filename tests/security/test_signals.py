"""SIGTERM and SIGHUP to a busy command act as Ctrl-C: nothing left behind, exit 128 + signal.

Each command runs as a real ``panoptes`` process whose external program is a
shell script that hangs (so the signal surely arrives mid-work); the test
sends the signal to the ``panoptes`` process alone, as ``kill`` or a service
manager does, and checks that the program was ended, that no temporary file
or directory is left, and the exit status: 143 (SIGTERM) or 129 (SIGHUP).
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import fake_program, process_alive

HANG = 'echo $$ >> "$PIDS"\nexec sleep 60'


def run_until_busy(args, tmp_path, program, body=HANG, stdin=subprocess.DEVNULL, count=1):
    """Start ``panoptes ARGS`` with ``program`` hanging; return the process once ``count`` have started."""
    pids = tmp_path / 'pids'
    scratch = tmp_path / 'tmpdir'
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, PIDS=str(pids), TMPDIR=str(scratch),
               PATH=f"{fake_program(tmp_path, program, body)}:{os.environ['PATH']}")
    process = subprocess.Popen([shutil.which('panoptes'), *map(str, args)], env=env, stdin=stdin,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not pids.exists() or len(pids.read_text().split()) < count:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f'{program} never started: {process.communicate()[1]}')
        time.sleep(0.05)
    return process, pids


def stop_with(process, pids, sig):
    """Send ``sig``; return (exit status, stderr) and check the hanging programs ended."""
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=90)
    deadline = time.monotonic() + 10
    while any(process_alive(int(pid)) for pid in pids.read_text().split()):
        assert time.monotonic() < deadline, 'a child process outlived the command'
        time.sleep(0.05)
    assert 'Traceback' not in stderr
    return process.returncode, stderr


SIGNALS = [(signal.SIGTERM, 143, 'Terminated'), (signal.SIGHUP, 129, 'Hangup')]


@pytest.mark.slow
@pytest.mark.parametrize('sig, status, word', SIGNALS, ids=['SIGTERM', 'SIGHUP'])
@pytest.mark.parametrize('jobs', [1, 2])
def test_fits_pack_leaves_no_part_file(tmp_path, data_copy, sig, status, word, jobs):
    frames = [data_copy('tiny.fits', f'frame{n}.fits') for n in range(2)]
    # The fake fpack writes some of its output first, as a real one would.
    body = 'for a; do [ "$prev" = -O ] && echo partial > "$a"; prev=$a; done\n' + HANG
    process, pids = run_until_busy(['fits', 'pack', '--jobs', jobs, *frames], tmp_path, 'fpack',
                                   body, count=jobs)
    assert stop_with(process, pids, sig) == (status, f'{word}\n')
    # Before: a hidden .frame0.fits.fz.part stayed beside the data.
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == [
        'frame0.fits', 'frame1.fits', 'pids']
    assert list((tmp_path / 'tmpdir').iterdir()) == []


@pytest.mark.slow
def test_fits_unpack_leaves_no_part_file(tmp_path, data_copy):
    packed = data_copy('solved.fits.fz')
    body = 'for a; do [ "$prev" = -O ] && echo partial > "$a"; prev=$a; done\n' + HANG
    process, pids = run_until_busy(['fits', 'unpack', packed], tmp_path, 'funpack', body)
    assert stop_with(process, pids, signal.SIGTERM) == (143, 'Terminated\n')
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == [
        'pids', 'solved.fits.fz']


@pytest.mark.slow
def test_fits_solve_removes_its_working_directories(tmp_path, data_copy):
    frames = [data_copy('tiny.fits', f'frame{n}.fits') for n in range(3)]
    process, pids = run_until_busy(['fits', 'solve', '--jobs', 2, *frames], tmp_path,
                                   'solve-field', count=2)
    assert stop_with(process, pids, signal.SIGTERM) == (143, 'Terminated\n')
    # Before: $TMPDIR/panoptes-solve-* stayed behind.
    assert list((tmp_path / 'tmpdir').iterdir()) == []


@pytest.mark.slow
def test_cr2_convert_leaves_no_partial_output(tmp_path, shared_data):
    source = next((shared_data / 'cr2').glob('*.cr2'))
    cr2 = tmp_path / source.name
    shutil.copy(source, cr2)
    process, pids = run_until_busy(['cr2', 'convert', cr2], tmp_path, 'exiftool')
    assert stop_with(process, pids, signal.SIGTERM) == (143, 'Terminated\n')
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == ['pids', cr2.name]


def test_image_timelapse_leaves_no_partial_movie(tmp_path):
    frames = tmp_path / 'frames'
    frames.mkdir()
    for number in range(3):
        (frames / f'2016090{number}T000000.jpg').write_bytes(b'\xff\xd8\xff\xd9')
    body = 'for a; do last=$a; done\necho partial > "$last"\n' + HANG
    process, pids = run_until_busy(['image', 'timelapse', frames, '--output', tmp_path / 'night.mp4'],
                                   tmp_path, 'ffmpeg', body)
    assert stop_with(process, pids, signal.SIGTERM) == (143, 'Terminated\n')
    assert not (tmp_path / 'night.mp4').exists()
    assert [path.name for path in tmp_path.iterdir() if path.suffix in ('.mp4', '.part')] == []


@pytest.mark.slow
def test_db_insert_keeps_what_it_stored(tmp_path, run_panoptes):
    process = subprocess.Popen([shutil.which('panoptes'), 'db', 'insert', 'weather'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdin.write('{"temp": 1}\n{"temp": 2}\n')
    process.stdin.flush()
    stored = [process.stdout.readline(), process.stdout.readline()]
    process.send_signal(signal.SIGTERM)
    rest, stderr = process.communicate(timeout=90)
    assert (process.returncode, stderr) == (143, 'Terminated\n')
    ids = {json.loads(line)['_id'] for line in stored + rest.splitlines()}
    found = run_panoptes('db', 'find', 'weather').stdout.splitlines()
    assert {json.loads(line)['_id'] for line in found} == ids
