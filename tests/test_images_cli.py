"""``panoptes image pretty|timelapse|focus|background``."""

import json
import os

import numpy as np
import pytest

from conftest import require_program
from panoptes_cli.images import make_pretty_image
from panoptes_cli.images.fits import getdata, write_fits


def records(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def test_pretty_ndjson_link_and_errors(cli, data_copy, tmp_path):
    first = data_copy('unsolved.fits')
    second = data_copy('solved.fits.fz')
    result = cli('image', 'pretty', '-j', '1', '--link-path', tmp_path / 'latest.jpg',
                 '--title', 'Tabby', first, tmp_path / 'missing.fits', second)
    assert result.exit_code == 1
    assert records(result.stdout) == [
        {'filename': str(first), 'output': str(tmp_path / 'unsolved.jpg'),
         'link': str(tmp_path / 'latest.jpg')},
        {'filename': str(second), 'output': str(tmp_path / 'solved.jpg'),
         'link': str(tmp_path / 'latest.jpg')},
    ]
    assert result.stderr == f'Error: {tmp_path / "missing.fits"}: No such file or directory\n'
    assert os.readlink(tmp_path / 'latest.jpg') == str(tmp_path / 'solved.jpg')


def test_pretty_replaces_a_picture_only_with_overwrite(cli, data_copy, tmp_path):
    fits_fn = data_copy('tiny.fits')
    out = tmp_path / 'out'
    out.mkdir()
    assert cli('image', 'pretty', '-o', out, fits_fn).exit_code == 0
    jpg = out / 'tiny.jpg'
    first = jpg.stat().st_mtime_ns
    again = cli('image', 'pretty', '-o', out, fits_fn)
    assert again.exit_code == 1
    assert again.stderr == (f'Error: {fits_fn}: {jpg}: File exists; '
                            'pass --overwrite to replace it\n')
    assert jpg.stat().st_mtime_ns == first
    assert cli('image', 'pretty', '-o', out, '--overwrite', fits_fn).exit_code == 0
    assert not (tmp_path / 'tiny.jpg').exists()


@pytest.mark.slow
def test_pretty_cr2_and_undecodable(cli, data_copy, tmp_path):
    require_program('exiftool')
    require_program('dcraw')
    good = data_copy('cr2/synthetic.cr2')
    bad = data_copy('cr2/canon-eos350d-metadata-only.cr2')
    result = cli('image', 'pretty', good, bad)
    assert result.exit_code == 1
    assert records(result.stdout)[0]['output'] == str(tmp_path / 'synthetic.jpg')
    assert result.stderr.startswith(f'Error: {bad}: cannot decode: ')
    assert len(result.stderr.splitlines()) == 1


@pytest.fixture
def jpg_frames(tmp_path):
    require_program('ffmpeg')
    directory = tmp_path / 'night'
    directory.mkdir()
    rng = np.random.default_rng(2)
    for index in range(4):
        data = rng.poisson(1500, (120, 160)).astype(np.uint16)
        data[50:53, 40 + 5 * index:43 + 5 * index] = 40000
        fits_fn = directory / f'20200101T0000{index:02d}.fits'
        write_fits(data, {'FILTER': 'RGGB'}, fits_fn)
        make_pretty_image(fits_fn)
        fits_fn.unlink()
    return directory


@pytest.mark.slow
def test_timelapse_json_and_overwrite(cli, jpg_frames, tmp_path):
    result = cli('image', 'timelapse', jpg_frames, '--fps', '5')
    assert result.exit_code == 0, result.stderr
    movie = jpg_frames / 'night.mp4'
    assert json.loads(result.stdout) == {'output': str(movie)}
    assert movie.stat().st_size > 0
    again = cli('image', 'timelapse', jpg_frames)
    assert again.exit_code == 1
    assert again.stderr == f'Error: {movie}: File exists; pass --overwrite to replace it\n'
    out = tmp_path / 'x.mp4'
    assert cli('image', 'timelapse', jpg_frames, '--output', out, '--glob', '*.jpg',
               '--overwrite').exit_code == 0
    assert out.exists()


def test_timelapse_empty_glob_and_missing_ffmpeg(cli, jpg_frames, tmp_path, monkeypatch):
    result = cli('image', 'timelapse', jpg_frames, '--glob', '*.png')
    assert result.exit_code == 1
    assert result.stderr == f"Error: {jpg_frames}: no images match '*.png'; pass --glob to match others\n"
    monkeypatch.setenv('PATH', str(tmp_path))
    result = cli('image', 'timelapse', jpg_frames)
    assert result.exit_code == 1
    assert result.stderr == ('Error: ffmpeg is not installed (or not on PATH); install it with: '
                             'sudo apt-get install ffmpeg\n')


@pytest.mark.slow
def test_timelapse_progress_on_a_terminal(jpg_frames, run_with_terminal_stderr):
    status, stdout, terminal = run_with_terminal_stderr('image', 'timelapse', jpg_frames)
    assert status == 0
    assert b'Encoding' in terminal and b'4/4' in terminal
    assert json.loads(stdout)['output'].endswith('night.mp4')


@pytest.mark.slow
def test_focus_ndjson(cli, data_copy, shared_data, tmp_path):
    from panoptes_cli.images.focus import vollath_F4

    tiny = data_copy('tiny.fits')
    result = cli('image', 'focus', '--axis', 'y', tiny, tmp_path / 'none.fits')
    assert result.exit_code == 1
    (record,) = records(result.stdout)
    assert record == {'filename': str(tiny), 'vollath_F4': pytest.approx(
        vollath_F4(getdata(tiny), axis='y')), 'axis': 'y'}
    assert 'none.fits' in result.stderr
    both = records(cli('image', 'focus', tiny).stdout)[0]
    assert both['axis'] is None
    assert cli('image', 'focus', '--axis', 'z', tiny).exit_code == 2


@pytest.mark.slow
def test_background_json_and_fits(cli, data_copy, tmp_path):
    fits_fn = data_copy('solved.fits.fz')
    out = tmp_path / 'solved-background.fits'
    result = cli('image', 'background', fits_fn, '--output-dir', tmp_path)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary['filename'] == str(fits_fn) and summary['output'] == str(out)
    assert {c: round(v['rms'], 2) for c, v in summary['channels'].items()} == {
        'r': 20.57, 'g': 32.79, 'b': 23.82}
    assert getdata(out).shape == (700, 700)
    again = cli('image', 'background', fits_fn, '-o', tmp_path)
    assert again.exit_code == 1 and 'pass --overwrite' in again.stderr
    bad = cli('image', 'background', tmp_path / 'none.fits')
    assert bad.exit_code == 1 and bad.stderr.startswith('Error: ')


def test_every_command_has_examples(cli):
    for command in ('pretty', 'timelapse', 'focus', 'background'):
        result = cli('image', command, '--help')
        assert result.exit_code == 0 and 'Examples:' in result.stdout
