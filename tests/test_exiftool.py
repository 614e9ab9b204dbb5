"""panoptes_cli.images.exiftool: one long-running exiftool per thread, on the real exiftool."""

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import require_program
from panoptes_cli.error import CheckFailed, Timeout
from panoptes_cli.images import cr2
from panoptes_cli.images.exiftool import KeptExifTool, kept_exiftool

SYNTHETIC = 'cr2/synthetic.cr2'
METADATA_ONLY = 'cr2/canon-eos350d-metadata-only.cr2'


@pytest.fixture(autouse=True)
def exiftool():
    return require_program('exiftool')


@pytest.fixture
def tool(exiftool):
    kept = KeptExifTool()
    yield kept
    kept.close()


def _one_shot(name):
    """What ``exiftool -j NAME`` prints, parsed."""
    done = subprocess.run([shutil.which('exiftool'), '-j', os.fspath(name)],
                          capture_output=True, check=True)
    return json.loads(done.stdout)


def _same_exif(first, second):
    """Equal but for the access time (which reading the file may change)."""
    def without_atime(exif):
        return {key: value for key, value in exif.items() if key != 'FileAccessDate'}

    return without_atime(first) == without_atime(second)


def _exiftool_children():
    """The exiftool processes this process started and has not reaped."""
    children = []
    for task in Path('/proc/self/task').iterdir():
        for pid in (task / 'children').read_text().split():
            try:
                command = Path(f'/proc/{pid}/cmdline').read_bytes()
            except FileNotFoundError:
                continue
            if b'exiftool' in command and b'stay_open' in command:
                children.append(int(pid))
    return children


def test_answers_are_those_of_one_shot_runs(tool, data_copy, tmp_path):
    from cr2_maker import sky_frame, write_cr2

    made = write_cr2(tmp_path / 'made.cr2', sky_frame(240, 360, seed=3))
    started = None
    for path in (data_copy(SYNTHETIC), data_copy(METADATA_ONLY), made):
        expected = _one_shot(path)
        out, err, status = tool.ask(['-j', os.fspath(path)])
        assert (err, status) == (b'', 0) and len(json.loads(out)) == 1
        assert _same_exif(json.loads(out)[0], expected[0])
        started = started or tool.process.pid
        # What the readers return, kept or not, is the same dict too.
        kept = cr2.start_read_exif(path, keep_exiftool=True).result()
        assert _same_exif(kept, cr2.read_exif(path)) and _same_exif(kept, expected[0])
    assert tool.process.pid == started  # one exiftool answered them all


def test_a_bad_file_gives_its_error_and_the_next_file_works(tool, data_copy, tmp_path):
    whole = data_copy(SYNTHETIC).read_bytes()
    truncated = tmp_path / 'truncated.cr2'
    truncated.write_bytes(whole[:len(whole) // 3])
    junk = tmp_path / 'junk.cr2'
    junk.write_bytes(b'\x00' * 100)
    with pytest.raises(CheckFailed, match='junk.cr2: cannot read EXIF: '):
        cr2.start_read_exif(junk, keep_exiftool=True).result()
    assert _same_exif(cr2.start_read_exif(truncated, keep_exiftool=True).result(),
                      cr2.read_exif(truncated))
    out, err, status = tool.ask(['-j', os.fspath(tmp_path / 'gone.cr2')])
    assert (out, status) == (b'', 1) and b'File not found' in err
    started = tool.process.pid
    assert json.loads(tool.ask(['-j', os.fspath(data_copy(SYNTHETIC))])[0])[0]['ISO'] == 100
    assert tool.process.pid == started


@pytest.mark.parametrize('name', ['-dash.cr2', '#hash.cr2', ' lead.cr2', 'new\nline.cr2',
                                  'back\\slash $x @y "q".cr2', 'café.cr2'])
def test_any_file_name(data_copy, tmp_path, monkeypatch, name):
    data_copy(SYNTHETIC, name)
    monkeypatch.chdir(tmp_path)
    exif = cr2.start_read_exif(name, keep_exiftool=True).result()
    assert (exif['SourceFile'], exif['FileName'], exif['ISO']) == (name, name, 100)


def test_a_dead_exiftool_is_replaced(tool, data_copy):
    path = os.fspath(data_copy(SYNTHETIC))
    tool.ask(['-j', path])
    first = tool.process
    first.kill()
    first.wait()
    assert json.loads(tool.ask(['-j', path])[0])[0]['ISO'] == 100
    assert tool.process.pid != first.pid


def test_a_slow_answer_times_out_and_the_next_command_works(tool, data_copy):
    path = os.fspath(data_copy(SYNTHETIC))
    tool.send(['-j', '-if', 'sleep(30); 1', path])  # a condition that takes 30 s to decide
    stuck = tool.process
    with pytest.raises(Timeout):
        tool.receive(timeout=1)
    assert stuck.poll() is not None  # killed, not left behind
    assert json.loads(tool.ask(['-j', path])[0])[0]['ISO'] == 100


def test_a_cancelled_read_does_not_shift_the_answers(data_copy):
    path = data_copy(SYNTHETIC)
    other = data_copy(METADATA_ONLY)
    cr2.start_read_exif(other, keep_exiftool=True).cancel()
    assert cr2.start_read_exif(path, keep_exiftool=True).result()['ISO'] == 100


def test_reads_started_together_in_one_thread_each_get_their_own_answer(data_copy):
    synthetic, camera = data_copy(SYNTHETIC), data_copy(METADATA_ONLY)
    first = cr2.start_read_exif(synthetic, keep_exiftool=True)
    second = cr2.start_read_exif(camera, keep_exiftool=True)
    assert first.result()['Model'] == 'Canon EOS 100D'
    assert second.result()['Model'] == 'Canon EOS 350D DIGITAL'


def test_one_exiftool_per_thread_ended_with_its_thread(data_copy):
    path = os.fspath(data_copy(SYNTHETIC))
    tools = {}

    def work(name):
        tools[name] = kept_exiftool()
        assert kept_exiftool() is tools[name]
        tools[name].ask(['-j', path])

    threads = [threading.Thread(target=work, args=(name,)) for name in 'ab']
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tools['a'] is not tools['b'] and tools['a'].process.pid != tools['b'].process.pid
    # The kernel ends each when its thread ends (and so when its process dies, even by kill -9).
    for kept in tools.values():
        assert kept.process.wait(timeout=10) == -signal.SIGKILL


def _child_reads(path, queue):
    tool = kept_exiftool()
    queue.put((tool.process is None, json.loads(tool.ask(['-j', path])[0])[0]['ISO'],
               tool.process.pid))


def test_a_forked_child_starts_its_own(data_copy):
    path = os.fspath(data_copy(SYNTHETIC))
    parent = kept_exiftool()
    parent.ask(['-j', path])
    queue = multiprocessing.get_context('fork').Queue()
    child = multiprocessing.get_context('fork').Process(target=_child_reads, args=(path, queue))
    child.start()
    fresh, iso, pid = queue.get(timeout=30)
    child.join(30)
    assert fresh and iso == 100 and pid != parent.process.pid
    assert parent.alive and json.loads(parent.ask(['-j', path])[0])[0]['ISO'] == 100


def test_nothing_is_started_when_no_exif_is_needed(shared_data, tmp_path):
    from panoptes_cli.images.pipeline import PipelineOptions, frame_for, process_frame

    fits = shutil.copy(shared_data / 'tiny.fits', tmp_path / '20160909T081152.fits')
    done = []
    thread = threading.Thread(target=lambda: done.extend(process_frame(
        frame_for(fits), PipelineOptions(steps=('pack', 'pretty')))))
    before = set(_exiftool_children())
    thread.start()
    time.sleep(0.2)
    seen = set(_exiftool_children()) - before
    thread.join()
    assert [event['step'] for event in done] == ['pack', 'pretty'] and not seen


@pytest.mark.slow
@pytest.mark.parametrize('how', ['kill -9 watch', 'kill -9 group', 'SIGTERM', 'SIGINT'])
def test_no_exiftool_outlives_a_watch(tmp_path, exiftool, how):
    from cr2_maker import sky_frame, write_cr2

    # exiftool under a name of this test's own, to find exactly the ones this watch started.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    os.symlink(exiftool, bin_dir / 'exiftool')
    env = {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}
    night = tmp_path / 'night'
    night.mkdir()
    process = subprocess.Popen(
        [shutil.which('panoptes'), 'image', 'watch', '--jobs', '2', '--steps', 'convert',
         '--settle', '0.2', night], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env=env)
    try:
        time.sleep(2)
        for number in range(2):
            write_cr2(night / f'20160909T0810{number}0.cr2', sky_frame(120, 160, seed=number))
        events = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert all('output' in event for event in events), events
        marker = os.fsencode(bin_dir / 'exiftool')
        assert _processes_running(marker)
        if how == 'kill -9 watch':
            process.kill()
        elif how == 'kill -9 group':
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGTERM if how == 'SIGTERM' else signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and _processes_running(marker):
        time.sleep(0.1)
    assert not _processes_running(marker)


def _processes_running(marker: bytes) -> list[int]:
    """The live processes whose command line holds ``marker``."""
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / 'cmdline').read_bytes()
                state = (entry / 'stat').read_text().rsplit(')', 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if marker in command and state != 'Z':
                found.append(int(entry.name))
    return found
