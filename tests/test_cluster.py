"""Batch work on a real Dask cluster (a scheduler and worker processes on loopback)."""

import functools
import os
import shutil
import sys

import pytest

from panoptes_cli import cluster
from panoptes_cli.error import IllegalValue
from panoptes_cli.images.fits import header_record

pytestmark = pytest.mark.slow

read_imageid = functools.partial(header_record, keywords=['IMAGEID'])


def test_scheduler_address_from_the_environment(monkeypatch):
    monkeypatch.setenv(cluster.SCHEDULER_VARIABLE, '127.0.0.1:9999')
    assert cluster.scheduler_address(None) == 'tcp://127.0.0.1:9999'
    assert cluster.scheduler_address('tcp://[::1]:8786') == 'tcp://[::1]:8786'
    monkeypatch.delenv(cluster.SCHEDULER_VARIABLE)
    assert cluster.scheduler_address(None) is None
    for bad in ('tcp://host:99999', 'host:port', 'ftp://host:1', ''):
        with pytest.raises(IllegalValue):
            cluster.scheduler_address(bad)


def test_results_come_back_once_each_in_the_callers_spelling(dask_cluster, data_copy, tmp_path):
    (tmp_path / 'night').mkdir()
    names = []
    for number in range(6):
        data_copy('tiny.fits', f'night/frame{number}.fits')
        names.append(f'night/frame{number}.fits')
    outcomes = list(cluster.DaskRunner(dask_cluster.address).map_unordered(read_imageid, names))
    assert sorted(outcome.item for outcome in outcomes) == names
    for outcome in outcomes:
        assert outcome.error is None
        assert outcome.value == read_imageid(outcome.item)


def test_a_path_no_worker_sees_is_that_files_error_naming_the_worker(dask_cluster, data_copy):
    data_copy('tiny.fits')
    runner = cluster.DaskRunner(dask_cluster.address)
    outcomes = {outcome.item: outcome for outcome in runner.map_unordered(
        read_imageid, ['tiny.fits', '/nowhere/frame.fits'])}
    assert outcomes['tiny.fits'].error is None
    error = outcomes['/nowhere/frame.fits'].error
    local_error = cluster_free_error(read_imageid, '/nowhere/frame.fits')
    assert type(error) is type(local_error)
    assert '/nowhere/frame.fits' in str(error)
    assert 'on worker tcp://127.0.0.1:' in str(error)


def test_a_worker_without_a_program_gets_no_tasks_and_is_named_once(
        dask_cluster, data_copy, tmp_path, logged_warnings):
    empty_bin = tmp_path / 'empty-bin'
    empty_bin.mkdir()
    dask_cluster.add_worker(env={'PATH': str(empty_bin)})
    names = [str(data_copy('tiny.fits', f'frame{number}.fits')) for number in range(8)]
    runner = cluster.DaskRunner(dask_cluster.address, programs=['solve-field'])
    outcomes = list(runner.map_unordered(read_imageid, names))
    assert [outcome.error for outcome in outcomes] == [None] * 8
    lacking = [message for message in logged_warnings if 'lacks solve-field' in message]
    assert len(lacking) == 1


def test_with_no_worker_having_the_program_each_file_says_so(tmp_path_factory, data_copy,
                                                               tmp_path):
    from conftest import DaskCluster

    empty_bin = tmp_path / 'empty-bin'
    empty_bin.mkdir()
    lonely = DaskCluster(tmp_path_factory.mktemp('dask'))
    try:
        lonely.add_worker(env={'PATH': str(empty_bin)})
        names = [str(data_copy('tiny.fits', f'frame{number}.fits')) for number in range(3)]
        runner = cluster.DaskRunner(lonely.address, programs=['solve-field'])
        outcomes = list(runner.map_unordered(read_imageid, names))
    finally:
        lonely.stop()
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert 'has solve-field installed' in outcome.error.msg
    assert sorted(outcome.item for outcome in outcomes) == sorted(names)


def test_an_unreachable_scheduler_is_one_clear_error():
    from conftest import free_port

    address = f'tcp://127.0.0.1:{free_port()}'
    with pytest.raises(cluster.ClusterError, match=f'Dask scheduler {address}: cannot connect'):
        list(cluster.DaskRunner(address).map_unordered(read_imageid, ['x.fits']))


def cluster_free_error(function, item):
    """The exception ``function(item)`` raises here, in this process."""
    try:
        function(item)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError(f'{item} did not fail')


def test_the_dask_cli_is_the_one_the_project_installs():
    # Users start clusters with `dask scheduler` / `dask worker` from the same environment.
    assert shutil.which('dask', path=os.path.dirname(sys.executable)) or shutil.which('dask')


def test_a_worker_killed_mid_batch_loses_no_file_and_doubles_none(dask_cluster, data_copy,
                                                                    shared_data):
    from panoptes_cli.images.fits import get_solve_field, getwcs

    solve = functools.partial(get_solve_field, index_dir=str(shared_data / 'astrometry'),
                              timeout=120)
    names = [str(data_copy('unsolved.fits', f'frame{number}.fits')) for number in range(8)]
    victim = dask_cluster.workers[0]
    seen = []
    for outcome in cluster.DaskRunner(dask_cluster.address).map_unordered(solve, names):
        seen.append(outcome)
        if victim.poll() is None:
            victim.kill()  # as a crashed host: no nanny brings it back
    assert victim.poll() is not None
    assert sorted(outcome.item for outcome in seen) == sorted(names)
    assert [outcome.error for outcome in seen] == [None] * len(names)
    for name in names:
        assert getwcs(name).is_celestial


def _ndjson(text: str) -> list[dict]:
    import json

    return sorted((json.loads(line) for line in text.splitlines()), key=lambda r: r['filename'])


def copies_in_two_places(data_copy, tmp_path, source: str, count: int) -> None:
    """Copy SOURCE COUNT times into tmp_path/local and tmp_path/cluster as frame<n>.fits."""
    for place in ('local', 'cluster'):
        (tmp_path / place).mkdir()
        for number in range(count):
            data_copy(source, f'{place}/frame{number}.fits')


def test_pack_on_the_cluster_prints_and_writes_what_jobs_2_does(dask_cluster, data_copy,
                                                                 tmp_path, run_panoptes):
    copies_in_two_places(data_copy, tmp_path, 'unsolved.fits', 4)
    local = run_panoptes('fits', 'pack', '--jobs', '2', *sorted(
        f'local/{path.name}' for path in (tmp_path / 'local').iterdir()))
    on_cluster = run_panoptes('fits', 'pack', '--scheduler', dask_cluster.address, *sorted(
        f'cluster/{path.name}' for path in (tmp_path / 'cluster').iterdir()))
    assert (local.returncode, on_cluster.returncode) == (0, 0), on_cluster.stderr
    assert [{key: value.replace('local/', 'cluster/') for key, value in record.items()}
            for record in _ndjson(local.stdout)] == _ndjson(on_cluster.stdout)
    for number in range(4):
        packed = (tmp_path / 'cluster' / f'frame{number}.fits.fz').read_bytes()
        assert _timeless(packed) == _timeless(
            (tmp_path / 'local' / f'frame{number}.fits.fz').read_bytes())


def _timeless(packed: bytes) -> bytes:
    """fpack's bytes without the time it writes: the CHECKSUM card (it covers that time) and
    the 'updated <time>' comments; DATASUM, the data's own checksum, is kept."""
    import re

    packed = re.sub(rb"CHECKSUM= '.{16}'", b"CHECKSUM= '?'", packed)
    return re.sub(rb'updated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d', b'updated ?', packed)


def test_a_missing_file_on_the_cluster_fails_alone(dask_cluster, data_copy, run_panoptes):
    data_copy('tiny.fits')
    result = run_panoptes('fits', 'pack', '--keep-original', '--scheduler',
                          dask_cluster.address, 'tiny.fits', 'missing.fits')
    assert result.returncode == 1
    assert _ndjson(result.stdout) == [{'filename': 'tiny.fits', 'output': 'tiny.fits.fz'}]
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1
    assert errors[0].startswith('Error: missing.fits: ')
    assert 'on worker tcp://127.0.0.1:' in errors[0]


def test_scheduler_address_errors(cli, run_panoptes, monkeypatch):
    from conftest import free_port

    bad = cli('fits', 'pack', '--scheduler', 'http://x', 'a.fits')
    assert bad.exit_code == 2
    assert 'not a Dask scheduler address' in bad.output + (bad.stderr or '')
    address = f'tcp://127.0.0.1:{free_port()}'
    unreachable = run_panoptes('fits', 'pack', 'a.fits', env={cluster.SCHEDULER_VARIABLE: address})
    assert unreachable.returncode == 1
    assert unreachable.stderr.splitlines()[-1].startswith(
        f'Error: Dask scheduler {address}: cannot connect')


def test_without_a_scheduler_nothing_imports_dask(data_copy):
    import subprocess

    data_copy('tiny.fits')
    script = ('import sys\n'
              'from typer.testing import CliRunner\n'
              'from panoptes_cli.commands.main import app\n'
              "result = CliRunner().invoke(app, ['fits', 'pack', '--keep-original', 'tiny.fits'])\n"
              'assert result.exit_code == 0, result.output\n'
              "print(sorted(name for name in sys.modules if name.split('.')[0] in "
              "('dask', 'distributed')))\n")
    shown = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                           check=True)
    assert shown.stdout.strip() == '[]'


def test_solve_on_the_cluster_gives_the_local_results_and_wcs(dask_cluster, data_copy, tmp_path,
                                                              shared_data, run_panoptes):
    from panoptes_cli.images.fits import getheader

    index = ['--index-dir', str(shared_data / 'astrometry')]
    copies_in_two_places(data_copy, tmp_path, 'unsolved.fits', 3)
    for place in ('local', 'cluster'):
        (tmp_path / place / 'empty.fits').write_bytes(b'')
    names = ['frame0.fits', 'frame1.fits', 'frame2.fits', 'empty.fits']
    local = run_panoptes('fits', 'solve', '--jobs', '2', *index, *(f'local/{n}' for n in names))
    on_cluster = run_panoptes('fits', 'solve', '--scheduler', dask_cluster.address, *index,
                              *(f'cluster/{n}' for n in names))
    assert local.returncode == on_cluster.returncode == 1  # empty.fits does not solve

    def comparable(record):
        return {key: (value.replace('local/', 'cluster/') if isinstance(value, str) else value)
                for key, value in record.items() if key != 'seconds'}

    assert [comparable(r) for r in _ndjson(local.stdout)] == [
        comparable(r) for r in _ndjson(on_cluster.stdout)]
    for number in range(3):
        solved = getheader(tmp_path / 'cluster' / f'frame{number}.fits')
        reference = getheader(tmp_path / 'local' / f'frame{number}.fits')
        for keyword in ('CTYPE1', 'CRVAL1', 'CRVAL2', 'CRPIX1', 'CD1_1', 'CD2_2'):
            assert solved[keyword] == reference[keyword]


def test_ctrl_c_cancels_the_tasks_not_done(dask_cluster, data_copy, shared_data):
    import signal
    import subprocess
    import time

    from distributed import Client

    names = [str(data_copy('unsolved.fits', f'frame{number}.fits')) for number in range(12)]
    process = subprocess.Popen(
        [shutil.which('panoptes'), 'fits', 'solve', '--scheduler', dask_cluster.address,
         '--index-dir', str(shared_data / 'astrometry'), *names],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()  # one file solved: the batch is under way
    assert first.startswith('{')
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert 'Traceback' not in stderr
    with Client(dask_cluster.address, set_as_default=False) as client:
        deadline = time.monotonic() + 30
        while any(client.processing().values()) or client.who_has():
            assert time.monotonic() < deadline, client.processing()
            time.sleep(0.2)


def test_image_watch_once_on_the_cluster_does_what_it_does_here(dask_cluster, data_copy,
                                                                 tmp_path, run_panoptes):
    copies_in_two_places(data_copy, tmp_path, 'tiny.fits', 2)
    steps = ['image', 'watch', '--once', '--steps', 'pack,pretty', '--no-latest']
    local = run_panoptes(*steps, '--jobs', '2', 'local')
    on_cluster = run_panoptes(*steps, '--scheduler', dask_cluster.address, 'cluster')
    assert (local.returncode, on_cluster.returncode) == (0, 0), on_cluster.stderr

    def events(stdout):
        import json

        return sorted((os.path.basename(event['filename']), event['step'],
                       os.path.basename(event.get('output') or ''), 'error' in event)
                      for event in map(json.loads, stdout.splitlines()))

    assert events(on_cluster.stdout) == events(local.stdout)
    assert len(events(on_cluster.stdout)) == 4
    for number in range(2):
        assert (tmp_path / 'cluster' / f'frame{number}.fits.fz').exists()
        assert (tmp_path / 'cluster' / f'frame{number}.jpg').exists()


@pytest.mark.parametrize('command, source, extra', [
    (['fits', 'header'], 'tiny.fits', ['-k', 'IMAGEID', '-e', '0', '-e', '5']),
    (['cr2', 'convert'], 'cr2/synthetic.cr2', []),
    (['image', 'pretty'], 'tiny.fits', []),
    (['image', 'focus'], 'tiny.fits', []),
    (['image', 'background'], 'tiny.fits', ['--box-size', '50']),
])
def test_every_batch_command_prints_on_the_cluster_what_it_prints_here(
        dask_cluster, data_copy, tmp_path, run_panoptes, command, source, extra):
    import json

    outputs = {}
    local = [] if command == ['fits', 'header'] else ['--jobs', '2']  # header reads in-process
    for place, placement in (('local', local), ('cluster', ['--scheduler', dask_cluster.address])):
        (tmp_path / place).mkdir()
        names = [f'{place}/{number}{os.path.splitext(source)[1]}' for number in range(2)]
        for name in names:
            data_copy(source, name)
        result = run_panoptes(*command, *extra, *placement, *names)
        records = sorted((json.loads(line) for line in result.stdout.splitlines()),
                         key=lambda record: json.dumps(record, sort_keys=True))
        errors = sorted(line.replace(place, '').split(' (on worker')[0]
                        for line in result.stderr.splitlines() if line.startswith('Error:'))
        outputs[place] = (result.returncode, json.dumps(records).replace(f'{place}/', ''), errors)
    assert outputs['cluster'] == outputs['local']
