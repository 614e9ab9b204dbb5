"""``panoptes cr2 convert|exif``: NDJSON per file, batch errors, progress on a terminal."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import require_program
from panoptes_cli.images.fits import getdata, getheader

SYNTHETIC = 'cr2/synthetic.cr2'
METADATA_ONLY = 'cr2/canon-eos350d-metadata-only.cr2'


def records(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(autouse=True)
def programs():
    require_program('exiftool')
    require_program('dcraw')


def test_convert_to_fits_beside_the_cr2(cli, data_copy, shared_data):
    path = data_copy(SYNTHETIC)
    result = cli('cr2', 'convert', path)
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout) == [{'filename': str(path), 'output': str(path.with_suffix('.fits'))}]
    np.testing.assert_array_equal(getdata(path.with_suffix('.fits')),
                                  np.flipud(np.load(shared_data / 'cr2' / 'synthetic.npy')))
    assert getheader(path.with_suffix('.fits'))['EXPTIME'] == 120.0


@pytest.mark.slow
def test_batch_goes_on_after_failures(cli, data_copy, tmp_path):
    good = data_copy(SYNTHETIC)
    bad = data_copy(METADATA_ONLY)
    result = cli('cr2', 'convert', '--jobs', '2', bad, tmp_path / 'missing.cr2', good)
    assert result.exit_code == 1
    assert records(result.stdout) == [{'filename': str(good), 'output': str(tmp_path / 'synthetic.fits')}]
    # Two at a time: the errors come in the order the files finish.
    errors = sorted(result.stderr.splitlines())
    assert len(errors) == 2
    assert errors[0].startswith(f'Error: {bad}: cannot decode: ')
    assert errors[1] == f'Error: {tmp_path / "missing.cr2"}: No such file'
    assert bad.exists()
    assert not (tmp_path / 'canon-eos350d-metadata-only.fits').exists()


@pytest.mark.slow
def test_existing_output_needs_overwrite(cli, data_copy):
    path = data_copy(SYNTHETIC)
    assert cli('cr2', 'convert', path).exit_code == 0
    again = cli('cr2', 'convert', path)
    assert again.exit_code == 1
    assert again.stderr.strip().endswith('File exists; pass --overwrite to replace it')
    assert cli('cr2', 'convert', '--overwrite', path).exit_code == 0


@pytest.mark.slow
@pytest.mark.parametrize('to', ['pgm', 'jpg', 'fits'])
def test_convert_formats_to_a_directory_and_remove(cli, data_copy, tmp_path, to):
    paths = [data_copy(SYNTHETIC, f'IMG_{n}.cr2') for n in range(3)]
    out = tmp_path / 'out'
    out.mkdir()
    result = cli('cr2', 'convert', '--to', to, '-o', out, '--remove-cr2', *paths)
    assert result.exit_code == 0, result.stderr
    assert sorted(r['output'] for r in records(result.stdout)) == [
        str(out / f'IMG_{n}.{to}') for n in range(3)]
    assert not any(path.exists() for path in paths)


@pytest.mark.slow
def test_convert_reads_names_from_stdin(cli, data_copy):
    paths = [data_copy(SYNTHETIC, f'{n}.cr2') for n in range(2)]
    result = cli('cr2', 'convert', '--decoder', 'dcraw', '-', input=''.join(f'{p}\n' for p in paths))
    assert result.exit_code == 0, result.stderr
    assert len(records(result.stdout)) == 2


def test_missing_output_dir_and_bad_option(cli, data_copy, tmp_path):
    path = data_copy(SYNTHETIC)
    result = cli('cr2', 'convert', '-o', tmp_path / 'nope', path)
    assert result.exit_code == 2
    assert 'nope' in result.stderr and 'does not exist' in result.stderr
    assert cli('cr2', 'convert', '--to', 'tiff', path).exit_code == 2


def test_missing_exiftool_is_one_line(cli, data_copy, tmp_path, monkeypatch):
    path = data_copy(SYNTHETIC)
    monkeypatch.setenv('PATH', str(tmp_path))
    result = cli('cr2', 'convert', path, path)
    assert result.exit_code == 1
    assert result.stderr == ('Error: exiftool is not installed (or not on PATH); install it '
                             'with: sudo apt-get install libimage-exiftool-perl\n')
    result = cli('cr2', 'exif', path)
    assert result.exit_code == 1 and 'libimage-exiftool-perl' in result.stderr


def test_missing_dcraw_for_pgm(cli, data_copy, tmp_path, monkeypatch):
    path = data_copy(SYNTHETIC)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    os.symlink(shutil.which('exiftool'), bin_dir / 'exiftool')
    monkeypatch.setenv('PATH', str(bin_dir))
    result = cli('cr2', 'convert', '--to', 'pgm', path)
    assert result.exit_code == 1
    assert result.stderr.endswith('sudo apt-get install dcraw\n')
    # FITS needs no dcraw: LibRaw decodes in process.
    assert cli('cr2', 'convert', path).exit_code == 0


@pytest.mark.slow
def test_exif_ndjson(cli, data_copy, tmp_path):
    good = data_copy(SYNTHETIC)
    real = data_copy(METADATA_ONLY)
    result = cli('cr2', 'exif', good, tmp_path / 'none.cr2', real)
    assert result.exit_code == 1
    exifs = [record['exif'] for record in records(result.stdout)]
    assert [record['filename'] for record in records(result.stdout)] == [str(good), str(real)]
    assert [e['FileName'] for e in exifs] == ['synthetic.cr2', 'canon-eos350d-metadata-only.cr2']
    assert exifs[0]['ExposureTime'] == 120 and exifs[1]['ExposureTime'] == '1/15'
    assert result.stderr == f'Error: {tmp_path / "none.cr2"}: No such file\n'


def test_help_says_which_decoder(cli):
    result = cli('cr2', 'convert', '--help')
    assert result.exit_code == 0
    assert 'LibRaw' in result.stdout and 'dcraw' in result.stdout and 'Examples:' in result.stdout


@pytest.mark.slow
def test_progress_bar_on_a_terminal_only(data_copy, run_with_terminal_stderr):
    """The real executable, stderr on a pseudo-terminal: a bar there, NDJSON on stdout."""
    paths = [data_copy(SYNTHETIC, f'{n}.cr2') for n in range(3)]
    status, stdout, terminal = run_with_terminal_stderr('cr2', 'convert', *paths)
    assert status == 0
    assert len(stdout.splitlines()) == 3
    assert b'Converting' in terminal


def test_truncated_cr2_is_one_error_line(run_panoptes, shared_data, tmp_path):
    """LibRaw prints why it stopped on the process's stderr: that goes into the one Error line."""
    truncated = tmp_path / 'truncated.cr2'
    truncated.write_bytes((shared_data / 'cr2' / 'synthetic.cr2').read_bytes()[:60000])
    result = run_panoptes('cr2', 'convert', truncated)
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1, result.stderr
    assert result.stderr.startswith(f'Error: {truncated}: cannot decode: LibRaw: ')
