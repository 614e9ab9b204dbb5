"""panoptes_cli.images.pipeline/.watch and ``panoptes image watch``, on real tools and frames."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import python_output, require_program
from cr2_maker import cr2_bytes, sky_frame, write_cr2
from panoptes_cli.images.pipeline import (
    PipelineOptions, frame_for, pending_steps, process_frame, read_journal)
from panoptes_cli.images.watch import FrameWatcher

pytest.importorskip('imagecodecs', reason='cr2_maker needs imagecodecs (the test extra)')

INDEX = 'astrometry/index-kic8462852-tycho2-p7.fits'


@pytest.fixture(autouse=True)
def tools():
    for program in ('solve-field', 'exiftool', 'funpack'):
        require_program(program)


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path, monkeypatch):
    """Temporary files of the watches started here, which tests kill mid-frame, stay in tmp_path."""
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setenv('TMPDIR', str(scratch))


@pytest.fixture
def backend(shared_data, tmp_path):
    config = tmp_path / 'backend.cfg'
    config.write_text(f'index {shared_data / INDEX}\n')
    return config


def _cr2(path, seed=0):
    return write_cr2(path, sky_frame(120, 160, seed=seed))


def _fits(shared_data, path):
    shutil.copy(shared_data / 'unsolved.fits', path)
    os.chmod(path, 0o644)
    return path


def _converted(cr2, tmp_path):
    """The pixels 'panoptes cr2 convert' writes for this CR2 (the project's FITS orientation)."""
    from panoptes_cli.images.cr2 import cr2_to_fits
    from panoptes_cli.images.fits import getdata

    copy = tmp_path / 'reference' / cr2.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(cr2, copy)
    return getdata(cr2_to_fits(copy, overwrite=True))


def _events(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _funpacked(path, tmp_path):
    out = tmp_path / f'unpacked-{path.name[:-3]}'
    subprocess.run([shutil.which('funpack'), '-O', str(out), str(path)], check=True)
    from astropy.io import fits

    with fits.open(out) as hdul:
        return hdul[0].data.copy(), hdul[0].header.copy()


def test_frames_are_recognised():
    assert frame_for('/n/20160909T081152.CR2').is_raw
    assert frame_for('/n/x.fits').fits == Path('/n/x.fits')
    assert frame_for('/n/x.jpg') is None and frame_for('/n/.tmp-x.fits') is None
    assert frame_for('/n/x.fits.fz') is None
    with pytest.raises(ValueError, match='teatime'):
        PipelineOptions(steps=('solve', 'teatime'))
    assert PipelineOptions(steps=('pretty', 'convert')).steps == ('convert', 'pretty')


@pytest.mark.slow
def test_watcher_waits_for_a_file_still_being_written(tmp_path):
    watcher = FrameWatcher([tmp_path], settle=0.6, live=True)
    try:
        with open(tmp_path / 'slow.cr2', 'wb') as stream:
            stream.write(b'x' * 1000)
            stream.flush()
            deadline = time.time() + 1.5
            while time.time() < deadline:
                assert tmp_path / 'slow.cr2' not in watcher.ready()
                stream.write(b'y' * 1000)
                stream.flush()
                time.sleep(0.1)
        # Closed after writing: inotify's close-write hands it over at once.
        time.sleep(0.3)
        assert watcher.ready() == [tmp_path / 'slow.cr2']
        assert watcher.ready() == []
    finally:
        watcher.close()


@pytest.mark.slow
def test_polling_watcher_uses_settle_time(tmp_path):
    watcher = FrameWatcher([tmp_path], settle=0.5, poll=True, poll_interval=0.1)
    try:
        (tmp_path / 'a.fits').write_bytes(b'SIMPLE')
        time.sleep(0.3)
        assert watcher.ready() == []
        time.sleep(0.6)
        assert watcher.ready() == [tmp_path / 'a.fits']
    finally:
        watcher.close()


@pytest.mark.slow
def test_once_runs_every_step_and_a_bad_frame_does_not_block(cli, shared_data, tmp_path, backend):
    night = tmp_path / 'night'
    night.mkdir()
    raster = sky_frame(120, 160, seed=1)
    write_cr2(night / '20160909T081000.cr2', raster)
    fits_frame = _fits(shared_data, night / '20160909T081152.fits')
    from astropy.io import fits

    with fits.open(shared_data / 'unsolved.fits') as hdul:
        original = hdul[0].data.copy()
    (night / '20160909T081300.cr2').write_bytes(cr2_bytes(raster)[:3000])  # truncated
    past = time.time() - 60
    for path in night.iterdir():
        os.utime(path, (past, past))

    result = cli('image', 'watch', '--once', '--jobs', '2', '--config', backend,
                 '--solve-timeout', '20', night)
    assert result.exit_code == 1, result.output
    events = _events(result.stdout)
    by_step = {(Path(e['filename']).name, e['step']): e for e in events}
    assert len(by_step) == len(events)  # no step twice
    # The FITS frame: solved, packed, shown.
    assert by_step['20160909T081152.fits', 'solve']['output'] == str(fits_frame)
    assert by_step['20160909T081152.fits', 'pack']['output'] == str(night / '20160909T081152.fits.fz')
    assert ('20160909T081152.fits', 'convert') not in by_step
    data, header = _funpacked(night / '20160909T081152.fits.fz', tmp_path)
    np.testing.assert_array_equal(data, original)
    assert header['CTYPE1'].startswith('RA---TAN')
    from astropy.wcs import WCS

    centre = WCS(header).pixel_to_world(350, 350)
    assert centre.ra.deg == pytest.approx(303.2, abs=0.5) and centre.dec.deg == pytest.approx(46.0, abs=0.5)
    assert not fits_frame.exists()
    # The good CR2: converted, not solvable (a synthetic sky), still packed and shown.
    assert 'error' in by_step['20160909T081000.cr2', 'solve']
    packed, header = _funpacked(night / '20160909T081000.fits.fz', tmp_path)
    np.testing.assert_array_equal(packed, _converted(night / '20160909T081000.cr2', tmp_path))
    assert header['FILTER'] == 'RGGB'
    assert not (night / '20160909T081000.fits').exists()
    assert (night / '20160909T081000.jpg').stat().st_size > 0
    # The truncated CR2: its convert failed, the steps needing it say so.
    bad = {step: by_step['20160909T081300.cr2', step] for step in ('convert', 'pack', 'pretty')}
    assert all('error' in event for event in bad.values())
    assert 'convert failed' in bad['pretty']['error']
    # latest.jpg is one of the pictures, never a link to follow.
    latest = night / 'latest.jpg'
    assert not latest.is_symlink() and latest.read_bytes() in {
        (night / name).read_bytes() for name in ('20160909T081000.jpg', '20160909T081152.jpg')}
    assert not [p.name for p in night.iterdir() if p.name.startswith('.') and 'pipeline' not in p.name]

    # A second run has nothing to do: failures are journalled, not retried.
    again = cli('image', 'watch', '--once', '--config', backend, night)
    assert again.exit_code == 0 and again.stdout == ''


def test_a_step_done_but_not_journalled_is_journalled_not_redone(tmp_path):
    frame = frame_for(_cr2(tmp_path / '20160909T081000.cr2'))
    options = PipelineOptions(steps=('convert', 'pack', 'pretty'))
    assert [event['step'] for event in process_frame(frame, options)] == [
        'convert', 'pack', 'pretty']
    journal = read_journal(frame)
    del journal['pretty']  # as a kill -9 between the JPG's rename and its journal entry leaves it
    frame.journal.write_text(json.dumps(journal))
    made = frame.jpg.stat().st_mtime_ns
    assert pending_steps(frame, options) == ['pretty']
    assert process_frame(frame, options) == []
    assert read_journal(frame)['pretty'] == {'output': str(frame.jpg)}
    assert frame.jpg.stat().st_mtime_ns == made and pending_steps(frame, options) == []


@pytest.mark.parametrize('reuse', [True, False])
def test_a_worker_reuses_the_memory_of_one_frame_for_the_next(reuse):
    faults = int(python_output(f"""
import resource
import numpy as np
from panoptes_cli.images.pipeline import reuse_freed_memory
if {reuse}:
    reuse_freed_memory()
np.ones(20_000_000, np.uint16)  # a first frame's array (40 MB), freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(20_000_000, np.uint16)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""))
    # Kept on the heap, the memory is not faulted in again (fresh mappings are, every time).
    assert faults < 50 if reuse else faults > 50


@pytest.mark.slow
def test_record_per_frame_stored_once(cli, tmp_path, monkeypatch):
    monkeypatch.setenv('PANOPTES_DB_TYPE', 'file')
    night = tmp_path / 'night'
    night.mkdir()
    _cr2(night / '20160909T081000.cr2')
    os.utime(night / '20160909T081000.cr2', (time.time() - 60,) * 2)
    result = cli('image', 'watch', '--once', '--steps', 'convert,pretty', '--record', 'frames', night)
    assert result.exit_code == 0, result.output
    steps = [event['step'] for event in _events(result.stdout)]
    assert steps == ['convert', 'pretty', 'record']
    # The journal says the record is there; remove it to check the store refuses a duplicate.
    journal = night / '.20160909T081000.pipeline.json'
    entries = json.loads(journal.read_text())
    del entries['record']
    journal.write_text(json.dumps(entries))
    assert cli('image', 'watch', '--once', '--steps', 'convert,pretty', '--record', 'frames',
               night).exit_code == 0
    from panoptes_cli.database import PanDB

    records = list(PanDB(db_type='file').find('frames'))
    assert len(records) == 1
    assert records[0]['data']['filename'] == str(night / '20160909T081000.cr2')
    assert records[0]['data']['convert']['output'] == str(night / '20160909T081000.fits')


def _start(args, **kwargs):
    # A session of its own, so that a test can kill the watch and its workers at once.
    return subprocess.Popen([shutil.which('panoptes'), 'image', 'watch', *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


def _read_events(process, count, timeout):
    """Read ``count`` events from a running watch's stdout (a thread, so we can time out)."""
    events = []

    def read():
        for line in process.stdout:
            events.append(json.loads(line))
            if len(events) >= count:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return events


def _snapshot(night):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes() if p.name.startswith('.') else None)
            for p in night.iterdir()
            if p.suffix in ('.fz', '.jpg', '.json', '.fits') and p.name != 'latest.jpg'}


@pytest.mark.slow
def test_live_watch_killed_and_restarted_does_every_step_once(shared_data, tmp_path, backend):
    night = tmp_path / 'night'
    night.mkdir()
    args = ['--config', backend, '--jobs', '2', '--settle', '1', '--solve-timeout', '20', night]
    process = _start(args)
    try:
        time.sleep(2)  # the watch is up
        staging = tmp_path / 'staging'
        staging.mkdir()
        for number in range(3):
            shutil.copy(_cr2(staging / f'20160909T0810{number}0.cr2', seed=number), night)
        _fits(shared_data, night / '20160909T081152.fits')
        # A frame arriving slowly: written in pieces, held open, closed at the end.
        whole = cr2_bytes(sky_frame(120, 160, seed=9))
        with open(night / '20160909T081400.cr2', 'wb') as stream:
            for start in range(0, len(whole), len(whole) // 4 + 1):
                stream.write(whole[start:start + len(whole) // 4 + 1])
                stream.flush()
                time.sleep(0.5)
        first = _read_events(process, 4, timeout=120)
        assert first, process.stderr.read() if process.poll() is not None else 'no events'
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # kill -9 of the watch and its workers, mid-night
        process.wait()
    before = _snapshot(night)
    finished = {(Path(e['filename']).name, e['step']) for e in first}

    again = _start(['--once', *args])
    out, err = again.communicate(timeout=300)
    assert again.returncode == 1, err  # the synthetic CR2s cannot be solved
    second = _events(out)
    redone = {(Path(e['filename']).name, e['step']) for e in second} & finished
    assert not redone
    # Whatever was finished before the kill was left as it was.
    after = _snapshot(night)
    for name, (mtime, content) in before.items():
        if name.endswith(('.fz', '.jpg')) or name.startswith('.'):
            journal_before = json.loads(content) if content else None
            if journal_before:
                journal_after = json.loads(after[name][1])
                for step, entry in journal_before.items():
                    assert journal_after[step] == entry, (name, step)
            elif name in after:
                assert after[name][0] == mtime, name
    # Every frame has every step journalled exactly once, and the outputs are whole.
    for stem in ('20160909T081000', '20160909T081010', '20160909T081020', '20160909T081400'):
        journal = json.loads((night / f'.{stem}.pipeline.json').read_text())
        assert set(journal) == {'convert', 'solve', 'pack', 'pretty'}
        assert 'output' in journal['convert'] and 'output' in journal['pack'], journal
        assert (night / f'{stem}.jpg').exists() and (night / f'{stem}.fits.fz').exists()
    slow, _ = _funpacked(night / '20160909T081400.fits.fz', tmp_path)
    np.testing.assert_array_equal(slow, _converted(night / '20160909T081400.cr2', tmp_path))
    journal = json.loads((night / '.20160909T081152.pipeline.json').read_text())
    assert set(journal) == {'solve', 'pack', 'pretty'} and 'output' in journal['solve']


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_frame_in_hand_and_exits_0(tmp_path, sig):
    night = tmp_path / 'night'
    night.mkdir()
    process = _start(['--steps', 'convert,pack,pretty', '--settle', '0.5', '--poll', night])
    try:
        time.sleep(2)
        _cr2(night / '20160909T081000.cr2')
        time.sleep(2.5)  # taken (settled) and being worked on
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    steps = [event['step'] for event in _events(out)]
    assert steps == ['convert', 'pack', 'pretty'], err
    assert 'Traceback' not in err


def test_bad_steps_is_a_usage_error(cli, tmp_path):
    result = cli('image', 'watch', '--steps', 'convert,teatime', tmp_path)
    assert result.exit_code == 2 and 'teatime' in result.stderr


@pytest.mark.slow
def test_two_watches_over_one_directory_share_the_work(tmp_path):
    night = tmp_path / 'night'
    night.mkdir()
    for number in range(4):
        _cr2(night / f'20160909T0810{number}0.cr2', seed=number)
    past = time.time() - 60
    for path in night.iterdir():
        os.utime(path, (past, past))
    args = ['--once', '--jobs', '2', '--steps', 'convert,pack,pretty', night]
    first, second = _start(args), _start(args)
    events = []
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        events += _events(out)
    done = [(Path(e['filename']).name, e['step']) for e in events]
    assert len(done) == len(set(done)) == 4 * 3


@pytest.mark.slow
def test_workers_die_with_a_killed_watch(tmp_path):
    night = tmp_path / 'night'
    night.mkdir()
    process = _start(['--jobs', '2', '--steps', 'convert', '--settle', '0.2', night])
    try:
        time.sleep(2)
        _cr2(night / '20160909T081000.cr2')
        assert _read_events(process, 1, timeout=60)
        workers = [int(pid) for pid in
                   Path(f'/proc/{process.pid}/task/{process.pid}/children').read_text().split()]
        assert workers
    finally:
        process.kill()  # the watch alone, as kill -9 PID does
        process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f'/proc/{pid}').exists() for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f'/proc/{pid}').exists()]
