"""``panoptes fits header|pack|unpack|solve|wcs``."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_program, process_alive, require_program
from panoptes_cli.images import fits

IMAGEID = 'PAN001_XXXXXX_20160909T081152'


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def config(tmp_path, shared_data):
    path = tmp_path / 'backend.cfg'
    path.write_text(f"index {shared_data / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'}\n")
    return path


@pytest.fixture
def truncated(tmp_path, shared_data):
    path = tmp_path / 'truncated.fits'
    path.write_bytes((shared_data / 'unsolved.fits').read_bytes()[:100_000])
    return path


class TestHeader:
    def test_whole_headers(self, cli, shared_data):
        result = cli('fits', 'header', shared_data / 'unsolved.fits',
                     shared_data / 'solved.fits.fz')
        assert result.exit_code == 0, result.stderr
        plain, packed = records(result.stdout)
        assert plain['filename'] == str(shared_data / 'unsolved.fits') and plain['hdu'] == 0
        assert packed['hdu'] == 1
        assert plain['header']['IMAGEID'] == packed['header']['IMAGEID'] == IMAGEID
        assert plain['header']['NAXIS1'] == 700 and plain['header']['EXPTIME'] == 120.4
        assert packed['header']['CTYPE1'] == 'RA---TAN-SIP'
        assert 'ZIMAGE' not in packed['header']

    def test_keys_and_extension(self, cli, shared_data):
        result = cli('fits', 'header', '-k', 'IMAGEID', '-k', 'exptime', '-k', 'NOSUCH',
                     shared_data / 'solved.fits.fz')
        assert records(result.stdout) == [{
            'filename': str(shared_data / 'solved.fits.fz'), 'hdu': 1,
            'header': {'IMAGEID': IMAGEID, 'exptime': 120.4, 'NOSUCH': None}}]
        result = cli('fits', 'header', '-e', '0', '-k', 'NAXIS', shared_data / 'solved.fits.fz')
        assert records(result.stdout)[0]['hdu'] == 0
        assert records(result.stdout)[0]['header'] == {'NAXIS': 0}
        result = cli('fits', 'header', '-e', 'COMPRESSED_IMAGE', '-k', 'FIELD',
                     shared_data / 'solved.fits.fz')
        assert records(result.stdout)[0]['header'] == {'FIELD': 'KIC 8462852'}
        result = cli('fits', 'header', '-e', '5', '-e', '0', '-k', 'IMAGEID',
                     shared_data / 'tiny.fits')
        assert result.exit_code == 0
        assert [(r['hdu'], r['header']) for r in records(result.stdout)] == [
            (5, None), (0, {'IMAGEID': IMAGEID})]
        assert result.stderr == f"Warning: {shared_data / 'tiny.fits'}: no extension 5; " \
                                'its header is null\n'

    def test_names_from_stdin(self, cli, shared_data):
        names = f"{shared_data / 'tiny.fits'}\n\n{shared_data / 'noheader.fits'}\n"
        result = cli('fits', 'header', '-k', 'IMAGEID', '-', input=names)
        assert result.exit_code == 0
        assert [r['header']['IMAGEID'] for r in records(result.stdout)] == [IMAGEID, None]

    def test_bad_files_do_not_stop_the_batch(self, cli, shared_data, tmp_path, truncated):
        text = tmp_path / 'notes.txt'
        text.write_text('hello\n')
        result = cli('fits', 'header', '-k', 'IMAGEID', tmp_path / 'missing.fits', truncated, text,
                     shared_data / 'tiny.fits')
        assert result.exit_code == 1
        assert [r['filename'] for r in records(result.stdout)] == [str(shared_data / 'tiny.fits')]
        assert result.stderr.splitlines() == [
            f"Error: {tmp_path / 'missing.fits'}: not a FITS file (no such file)",
            f'Error: {truncated}: not a FITS file (truncated: 100000 of 987840 bytes)',
            f'Error: {text}: not a FITS file (no SIMPLE card found)',
        ]

    @pytest.mark.slow
    def test_real_process(self, run_panoptes, shared_data):
        result = run_panoptes('fits', 'header', '-k', 'FIELD', shared_data / 'tiny.fits')
        assert result.returncode == 0, result.stderr
        assert records(result.stdout)[0]['header'] == {'FIELD': 'KIC 8462852'}
        assert result.stderr == ''


class TestPack:
    @pytest.mark.slow
    def test_pack_and_unpack(self, cli, data_copy):
        paths = [data_copy('unsolved.fits'), data_copy('tiny.fits')]
        before = [fits.getdata(p) for p in paths]
        result = cli('fits', 'pack', *paths)
        assert result.exit_code == 0, result.stderr
        # Two at a time (the default -j is the number of cores): in the order they finish.
        assert sorted(records(result.stdout), key=lambda r: r['filename']) == sorted(
            ({'filename': str(p), 'output': f'{p}.fz'} for p in paths), key=lambda r: r['filename'])
        assert not any(p.exists() for p in paths)
        result = cli('fits', 'unpack', '-j', '1', *[f'{p}.fz' for p in paths])
        assert result.exit_code == 0, result.stderr
        assert records(result.stdout) == [{'filename': f'{p}.fz', 'output': str(p)} for p in paths]
        for path, data in zip(paths, before, strict=True):
            assert np.array_equal(fits.getdata(path), data)
            assert not Path(f'{path}.fz').exists()

    def test_without_the_binaries(self, cli, data_copy, monkeypatch):
        monkeypatch.setenv('PATH', '/nonexistent')
        path = data_copy('unsolved.fits')
        data = fits.getdata(path)
        assert cli('fits', 'pack', path).exit_code == 0
        assert cli('fits', 'unpack', f'{path}.fz').exit_code == 0
        assert np.array_equal(fits.getdata(path), data)

    def test_keep_original_and_overwrite(self, cli, data_copy):
        path = data_copy('tiny.fits')
        assert cli('fits', 'pack', '--keep-original', path).exit_code == 0
        assert path.exists() and Path(f'{path}.fz').exists()
        result = cli('fits', 'pack', path)
        assert result.exit_code == 1
        assert result.stderr == (f'Error: {path}: {path}.fz: File exists; '
                                 'pass --overwrite to replace it\n')
        assert path.exists()
        result = cli('fits', 'pack', '--overwrite', path)
        assert result.exit_code == 0 and not path.exists()
        result = cli('fits', 'unpack', '--keep-original', f'{path}.fz')
        assert result.exit_code == 0 and path.exists() and Path(f'{path}.fz').exists()

    def test_bad_files_do_not_stop_the_batch(self, cli, data_copy, tmp_path, truncated):
        good = data_copy('tiny.fits')
        result = cli('fits', 'pack', truncated, tmp_path / 'missing.fits', good)
        assert result.exit_code == 1
        assert records(result.stdout) == [{'filename': str(good), 'output': f'{good}.fz'}]
        assert sorted(result.stderr.splitlines()) == [
            f"Error: {tmp_path / 'missing.fits'}: not a FITS file (no such file)",
            f'Error: {truncated}: not a FITS file (truncated: 100000 of 987840 bytes)',
        ]
        assert truncated.exists() and not Path(f'{truncated}.fz').exists()
        result = cli('fits', 'unpack', good)
        assert result.exit_code == 1
        assert 'does not end in .fz' in result.stderr

    @pytest.mark.slow
    def test_real_process(self, run_panoptes, data_copy):
        require_program('fpack')
        path = data_copy('tiny.fits')
        result = run_panoptes('fits', 'pack', path)
        assert result.returncode == 0, result.stderr
        assert records(result.stdout) == [{'filename': str(path), 'output': f'{path}.fz'}]


class TestSolve:
    @pytest.fixture(autouse=True)
    def programs(self):
        require_program('solve-field')
        require_program('wcsinfo')

    @pytest.mark.slow
    def test_batch_with_a_failure(self, cli, data_copy, config, tmp_path):
        good = [data_copy('unsolved.fits'), data_copy('solved.fits.fz')]
        bad = tmp_path / 'missing.fits'
        result = cli('fits', 'solve', '--config', config, '--jobs', '2', *good, bad)
        assert result.exit_code == 1
        by_name = {r['filename']: r for r in records(result.stdout)}
        assert set(by_name) == {*map(str, good), str(bad)}
        assert by_name[str(bad)] == {
            'filename': str(bad), 'solved': False, 'seconds': by_name[str(bad)]['seconds'],
            'error': f'{bad}: not a FITS file (no such file)'}
        assert result.stderr == f'Error: {bad}: not a FITS file (no such file)\n'
        solved = by_name[str(good[0])]
        assert solved['solved'] is True and solved['skipped'] is False
        assert set(solved) == {'filename', 'solved', 'skipped', 'output', 'ra', 'dec',
                               'pixel_scale', 'rotation', 'field_width', 'field_height',
                               'seconds'}
        assert solved['ra'] == pytest.approx(303.21, abs=0.05)
        assert solved['dec'] == pytest.approx(46.02, abs=0.05)
        assert solved['pixel_scale'] == pytest.approx(10.3, abs=0.1)
        assert solved['field_width'] == pytest.approx(2.0, abs=0.02)
        assert by_name[str(good[1])]['skipped'] is True
        assert fits.getwcs(good[0]).is_celestial

    @pytest.mark.slow
    def test_overwrite_solves_again(self, cli, data_copy, config):
        path = data_copy('solved.fits.fz')
        result = cli('fits', 'solve', '--config', config, '--overwrite', path)
        assert result.exit_code == 0, result.stderr
        assert records(result.stdout)[0]['skipped'] is False

    @pytest.mark.slow
    def test_hint_index_dir_and_names_from_stdin(self, cli, data_copy, shared_data):
        path = data_copy('tiny.fits')
        result = cli('fits', 'solve', '--ra', '303.2', '--dec', '46', '--radius', '3',
                     '--index-dir', shared_data / 'astrometry', '-', input=f'{path}\n')
        assert result.exit_code == 0, result.stderr
        assert records(result.stdout)[0]['field_width'] == pytest.approx(0.573, abs=0.01)

    @pytest.mark.slow
    def test_no_solution(self, cli, tmp_path, config):
        from astropy.io import fits as afits

        path = tmp_path / 'noise.fits'
        afits.writeto(path, np.random.default_rng(3).normal(1000, 10, (300, 300)))
        result = cli('fits', 'solve', '--config', config, path)
        assert result.exit_code == 1
        record = records(result.stdout)[0]
        assert record['solved'] is False and 'no solution found' in record['error']
        assert result.stderr.startswith(f'Error: {path}: no solution found')

    def test_usage_errors(self, cli, data_copy):
        path = data_copy('tiny.fits')
        result = cli('fits', 'solve', '--ra', '10', path)
        assert result.exit_code == 2
        assert cli('fits', 'solve', '--jobs', '0', path).exit_code == 2

    @pytest.mark.slow
    def test_sexagesimal_hint_and_pass_through_options(self, cli, data_copy, config):
        path = data_copy('unsolved.fits')
        result = cli('fits', 'solve', '--config', config, '--ra', '20:12:51', '--dec', '+46:01',
                     '--radius', '2', '--downsample', '2', '--scale-units', 'arcsecperpix',
                     '--scale-low', '9', '--scale-high', '12', path)
        assert result.exit_code == 0, result.stderr
        assert records(result.stdout)[0]['pixel_scale'] == pytest.approx(10.3, abs=0.1)

    @pytest.mark.parametrize('args', [['--ra', '25:00:00', '--dec', '1'],
                                      ['--ra', '1', '--dec', '+46:75'],
                                      ['--ra', 'north', '--dec', '1'],
                                      ['--scale-units', 'furlongs']])
    def test_bad_pass_through_options_are_usage_errors(self, cli, data_copy, args):
        assert cli('fits', 'solve', *args, data_copy('tiny.fits')).exit_code == 2

    @pytest.mark.slow
    def test_verbose_logs_each_program_run(self, run_panoptes, data_copy, config):
        path = data_copy('tiny.fits')
        result = run_panoptes('--verbose', 'fits', 'solve', '--config', config, path)
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        ran = [line for line in lines if line.startswith('Debug: Running: ')]
        # The stars are found by image2xy, and solve-field is given their list.
        assert any('image2xy ' in line and line.endswith(str(path)) for line in ran)
        solve_field = next(line for line in ran if 'solve-field ' in line)
        assert f'--config {config}' in solve_field and solve_field.endswith('-stars.xyls')
        assert any(line.startswith('Debug: solve-field ended (exit status 0) after ')
                   for line in lines)
        assert any('wcsinfo ' in line for line in lines if line.startswith('Debug: Running: '))

    @pytest.mark.slow
    def test_real_process(self, run_panoptes, data_copy, config):
        path = data_copy('tiny.fits')
        result = run_panoptes('fits', 'solve', '--config', config, path)
        assert result.returncode == 0, result.stderr
        assert records(result.stdout)[0]['solved'] is True
        # Not a terminal: no progress bar on stderr.
        assert result.stderr == ''


class TestWcs:
    def test_solved(self, cli, shared_data):
        require_program('wcsinfo')
        result = cli('fits', 'wcs', shared_data / 'solved.fits.fz', shared_data / 'unsolved.fits')
        assert result.exit_code == 1
        (info,) = records(result.stdout)
        assert info['filename'] == str(shared_data / 'solved.fits.fz')
        assert info['ra'] == pytest.approx(303.21, abs=0.05)
        assert info['pixel_scale'] == pytest.approx(10.3, abs=0.1)
        assert info['wcsinfo']['imagew'] == 700 and info['wcsinfo']['fieldunits'] == 'degrees'
        assert 'no WCS in the header' in result.stderr

    def test_unsolved_and_bad(self, cli, shared_data, truncated):
        require_program('wcsinfo')
        result = cli('fits', 'wcs', shared_data / 'unsolved.fits')
        assert result.exit_code == 1
        assert result.stderr == (f"Error: {shared_data / 'unsolved.fits'}: "
                                 'no WCS in the header (not plate-solved yet)\n')
        result = cli('fits', 'wcs', truncated)
        assert result.exit_code == 1
        assert result.stderr == (f'Error: {truncated}: '
                                 'not a FITS file (truncated: 100000 of 987840 bytes)\n')


@pytest.mark.parametrize('command', ['header', 'pack', 'unpack', 'solve', 'wcs'])
def test_help_has_examples(cli, command):
    result = cli('fits', command, '--help')
    assert result.exit_code == 0
    assert 'Examples:' in result.stdout and f'panoptes fits {command}' in result.stdout


def _fake_solve_field(tmp_path, body: str) -> dict:
    """An environment whose solve-field is a shell script (to hang on purpose)."""
    return {'PATH': f"{fake_program(tmp_path, 'solve-field', body)}:{os.environ['PATH']}"}


@pytest.mark.slow
def test_solve_ctrl_c_stops_every_solve(tmp_path, data_copy):
    panoptes = shutil.which('panoptes')
    pids = tmp_path / 'pids'
    env = dict(os.environ, TMPDIR=str(tmp_path / 'tmpdir'),
               **_fake_solve_field(tmp_path, f'echo $$ >> {pids}\nexec sleep 60'))
    (tmp_path / 'tmpdir').mkdir()
    paths = [data_copy('tiny.fits', f'tiny{n}.fits') for n in range(3)]
    process = subprocess.Popen([panoptes, 'fits', 'solve', '--jobs', '2', *map(str, paths)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not pids.exists() or len(pids.read_text().split()) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    assert 'Traceback' not in stderr
    assert not any(process_alive(int(pid)) for pid in pids.read_text().split())
    assert list((tmp_path / 'tmpdir').iterdir()) == []


@pytest.mark.slow
def test_solve_progress_on_a_terminal(data_copy, config, run_with_terminal_stderr):
    require_program('solve-field')
    paths = [data_copy('tiny.fits', f'tiny{n}.fits') for n in range(2)]
    status, stdout, shown = run_with_terminal_stderr(
        'fits', 'solve', '--jobs', '1', '--config', config, *paths)
    assert status == 0
    assert len(records(stdout)) == 2
    assert b'Solving' in shown


@pytest.mark.slow
def test_solve_from_a_pipe_prints_each_result_while_the_pipe_is_open(data_copy, shared_data):
    import json
    import select

    require_program('solve-field')
    first, second = data_copy('unsolved.fits', 'a.fits'), data_copy('unsolved.fits', 'b.fits')
    process = subprocess.Popen(
        [shutil.which('panoptes'), 'fits', 'solve', '--index-dir',
         str(shared_data / 'astrometry'), '-'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        process.stdin.write(f'{first}\n')
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, 'no result while the pipe stayed open'
        assert json.loads(process.stdout.readline())['filename'] == str(first)
        rest, stderr = process.communicate(json.dumps({'filename': str(second)}) + '\n',
                                           timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert [json.loads(line)['filename'] for line in rest.splitlines()] == [str(second)]
