"""Plate solving with the real solve-field and wcsinfo and the small shared index."""

import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits as afits

from conftest import fake_program, process_alive, require_program
from panoptes_cli.error import IllegalValue, InvalidCommand, NotFound, PanError, SolveError
from panoptes_cli.error import Timeout as SolveTimeout
from panoptes_cli.images import fits

CENTRE = (303.21, 46.02)


@pytest.fixture(autouse=True)
def programs():
    require_program('solve-field')
    require_program('wcsinfo')


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path, monkeypatch):
    """Give solve-field's private directories a TMPDIR of their own, to see them go."""
    tmpdir = tmp_path / 'tmpdir'
    tmpdir.mkdir()
    monkeypatch.setenv('TMPDIR', str(tmpdir))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmpdir))
    return tmpdir


@pytest.fixture
def config(tmp_path, shared_data):
    """A backend config file with only the small index of the KIC 8462852 field."""
    path = tmp_path / 'backend.cfg'
    path.write_text(f"index {shared_data / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'}\n")
    return {'--config': path}


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_solution(info, fieldw_degrees=None):
    """wcsinfo's numbers come as Quantities, as in 0.2.29."""
    assert info['ra_center'].to_value(u.deg) == pytest.approx(CENTRE[0], abs=0.05)
    assert info['dec_center'].to_value(u.deg) == pytest.approx(CENTRE[1], abs=0.05)
    assert info['pixscale'].to_value(u.arcsec / u.pix) == pytest.approx(10.3, abs=0.1)


class TestGetSolveField:
    @pytest.mark.slow
    def test_unsolved(self, data_copy, config, tmp_path, private_tmpdir):
        path = data_copy('unsolved.fits')
        before_data = fits.getdata(path)
        before = fits.getheader(path)
        info = fits.get_solve_field(path, **config)
        assert info['solved_fits_file'] == str(path)
        assert info['skipped'] is False
        assert_solution(info)
        assert info['fieldunits'] == 'degrees' and info['fieldw'].to_value(u.deg) == pytest.approx(2.0, abs=0.02)
        wcs = fits.getwcs(path)
        assert wcs.is_celestial
        ra, dec = wcs.all_pix2world(349.5, 349.5, 0)
        assert (ra, dec) == (pytest.approx(CENTRE[0], abs=0.05), pytest.approx(CENTRE[1], abs=0.05))
        after = fits.getheader(path)
        # The image's own keywords are all still there, EQUINOX included.
        for keyword in ('IMAGEID', 'FIELD', 'EXPTIME', 'RA-MNT', 'DEC-MNT', 'EQUINOX', 'DATE-OBS'):
            assert after[keyword] == before[keyword]
        assert info['IMAGEID'] == before['IMAGEID']
        assert np.array_equal(fits.getdata(path), before_data)
        # The checksums of the original were renewed, not left stale.
        with afits.open(path, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1
        # Nothing of solve-field's is left, neither beside the image nor in TMPDIR.
        assert files_in(path.parent) == ['backend.cfg', 'pandir', 'tmpdir', 'unsolved.fits']
        assert files_in(private_tmpdir) == []

    @pytest.mark.slow
    @pytest.mark.parametrize('name', ['tiny.fits', 'noheader.fits'])
    def test_small_crops_solve_with_the_default_downsampling(self, data_copy, config, name):
        path = data_copy(name)
        info = fits.get_solve_field(path, **config)
        assert_solution(info)
        assert info['fieldunits'] == 'arcminutes' and info['fieldw'].to_value(u.arcmin) == pytest.approx(34.4, abs=0.5)

    def test_already_solved_is_skipped(self, data_copy, config):
        path = data_copy('solved.fits.fz')
        raw = path.read_bytes()
        info = fits.get_solve_field(path, **config)
        assert info['skipped'] is True
        assert_solution(info)
        assert path.read_bytes() == raw

    @pytest.mark.slow
    def test_fpacked_file_is_solved_again_and_stays_packed(self, data_copy, config, tmp_path):
        path = data_copy('solved.fits.fz')
        data = fits.getdata(path)
        # A term of an older, higher-order solution that must not survive.
        with afits.open(path, mode='update', disable_image_compression=True) as hdul:
            hdul[1].header['A_5_0'] = 1e-3
        assert 'A_5_0' in fits.getheader(path)
        info = fits.get_solve_field(path, skip_solved=False, **config)
        assert info['skipped'] is False and info['solved_fits_file'] == str(path)
        assert_solution(info)
        with afits.open(path) as hdul:
            assert isinstance(hdul[1], afits.CompImageHDU)
        header = fits.getheader(path)
        assert 'A_5_0' not in header and header['A_ORDER'] == 2
        assert np.array_equal(fits.getdata(path), data)
        assert fits.getwcs(path).is_celestial
        assert not (tmp_path / 'solved.fits').exists()

    @pytest.mark.slow
    def test_new_file_instead_of_replacing(self, data_copy, config):
        path = data_copy('unsolved.fits')
        raw = path.read_bytes()
        info = fits.get_solve_field(path, replace=False, **config)
        new = path.with_suffix('.new')
        assert info['solved_fits_file'] == str(new)
        assert path.read_bytes() == raw
        assert fits.getwcs(new).is_celestial
        with pytest.raises(FileExistsError):
            fits.get_solve_field(path, replace=False, overwrite=False, **config)
        with pytest.raises(IllegalValue):
            fits.get_solve_field(path, overwrite=False, **config)

    @pytest.mark.slow
    def test_no_solution_raises(self, tmp_path, config):
        path = tmp_path / 'noise.fits'
        rng = np.random.default_rng(3)
        afits.writeto(path, rng.normal(1000, 10, (300, 300)).astype(np.float32))
        raw = path.read_bytes()
        with pytest.raises(SolveError, match=f'^SolveError: {path}: no solution found'):
            fits.get_solve_field(path, timeout=20, **config)
        assert path.read_bytes() == raw

    @pytest.mark.parametrize('timeout, options', [
        (0.3, {'--nsigma': 8}),  # an option on the image: solve-field finds the stars
        (0.01, {})])  # the stars are found here (images/sources.py)
    def test_timeout_stops_solve_field(self, data_copy, config, private_tmpdir, timeout, options):
        path = data_copy('unsolved.fits')
        started = time.monotonic()
        with pytest.raises(SolveTimeout, match=f'no solution within {timeout:g} s'):
            fits.get_solve_field(path, timeout=timeout, **{**config, '--downsample': 1, **options})
        assert time.monotonic() - started < 5
        assert files_in(private_tmpdir) == []
        assert not fits.getwcs(path).is_celestial

    def test_not_fits(self, tmp_path, config):
        text = tmp_path / 'notes.fits'
        text.write_text('hello')
        with pytest.raises(PanError, match='not a FITS file'):
            fits.get_solve_field(text, **config)
        with pytest.raises(PanError, match='not a FITS file'):
            fits.get_solve_field(tmp_path / 'missing.fits', **config)

    @pytest.mark.slow
    def test_index_dir(self, data_copy, shared_data):
        info = fits.get_solve_field(data_copy('tiny.fits'),
                                    index_dir=shared_data / 'astrometry')
        assert_solution(info)
        with pytest.raises(PanError, match='no such index directory'):
            fits.get_solve_field(data_copy('unsolved.fits'), index_dir='/nonexistent')

    def test_solve_field_missing(self, data_copy, monkeypatch):
        monkeypatch.setenv('PATH', '/nonexistent')
        with pytest.raises(InvalidCommand, match='solve-field is not installed'):
            fits.get_solve_field(data_copy('unsolved.fits'))


class TestSolveField:
    @pytest.mark.slow
    def test_command_line(self, data_copy, config):
        path = data_copy('tiny.fits')
        with fits.solve_field(path, **config, **{'--no-tweak': True, '--no-remove-lines': False}) \
                as process:
            args = process.args
            process.communicate()
        # The manual's defaults, the mount position as a hint, our private files.
        for option in ('--guess-scale', '--no-verify', '--crpix-center', '--temp-axy',
                       '--no-plots', '--no-tweak'):
            assert option in args
        assert '--no-remove-lines' not in args
        assert args[args.index('--downsample') + 1] == '1'
        assert args[args.index('--cpulimit') + 1] == '15'
        assert args[args.index('--ra') + 1] == '301.56439'
        assert args[args.index('--dec') + 1] == '44.456875'
        assert args[args.index('--radius') + 1] == '15.0'
        assert args[args.index('--dir') + 1] == str(process.workdir)
        assert args[-1] == str(path)
        assert not process.workdir.exists()

    @pytest.mark.slow
    def test_explicit_hint_and_options(self, data_copy, config):
        path = data_copy('unsolved.fits')
        with fits.solve_field(path, ra=303.2, dec=46.0, radius=2, solve_opts=['--no-plots'],
                              **config) as process:
            process.communicate()
            assert process.wcs_file.exists()
        args = process.args
        assert args[args.index('--ra') + 1] == '303.2'
        assert args[args.index('--radius') + 1] == '2'
        assert '--guess-scale' not in args

    @pytest.mark.slow
    def test_fpacked_input_is_unpacked_privately(self, data_copy, config, tmp_path):
        path = data_copy('solved.fits.fz')
        with fits.solve_field(path, **config) as process:
            assert process.solve_file.parent == process.workdir
            assert process.solve_file.name == 'solved.fits'
            process.communicate()
        assert files_in(tmp_path) == ['backend.cfg', 'pandir', 'solved.fits.fz', 'tmpdir']

    def test_bad_arguments(self, data_copy):
        path = data_copy('tiny.fits')
        with pytest.raises(TypeError, match='overwrit'):
            fits.solve_field(path, overwrit=True)
        with pytest.raises(IllegalValue):
            fits.solve_field(path, ra=10)

    @pytest.mark.slow
    def test_timeout_kills_the_whole_process_group(self, data_copy, tmp_path, monkeypatch,
                                                  private_tmpdir):
        # A solve-field that hangs in a child process, as astrometry-engine can.
        pids = tmp_path / 'pids'
        fake = fake_program(tmp_path, 'solve-field', f'sleep 60 &\necho $! > {pids}\nwait')
        monkeypatch.setenv('PATH', f'{fake}:/usr/bin:/bin')
        path = data_copy('tiny.fits')
        with pytest.raises(SolveTimeout):
            with fits.solve_field(path, timeout=1) as process:
                process.communicate()
        assert not process_alive(int(pids.read_text()))
        assert process.returncode == -signal.SIGTERM
        assert files_in(private_tmpdir) == []


class TestSolveFields:
    @pytest.mark.slow
    def test_parallel_results_and_failures(self, data_copy, tmp_path, config):
        good = [data_copy('unsolved.fits'), data_copy('tiny.fits')]
        bad = tmp_path / 'missing.fits'
        results = list(fits.solve_fields([*good, bad], jobs=2, **config))
        assert len(results) == 3
        by_name = {result['filename']: result for result in results}
        failed = by_name[str(bad)]
        assert failed['solved'] is False
        assert failed['error'] == f'{bad}: not a FITS file (no such file)'
        for path in good:
            result = by_name[str(path)]
            assert result['solved'] is True and result['skipped'] is False
            assert result['output'] == str(path)
            assert result['ra'] == pytest.approx(CENTRE[0], abs=0.05)
            assert result['dec'] == pytest.approx(CENTRE[1], abs=0.05)
            assert result['pixel_scale'] == pytest.approx(10.3, abs=0.1)
            assert result['rotation'] == pytest.approx(89.6, abs=1)
            assert result['seconds'] > 0
        assert by_name[str(good[0])]['field_width'] == pytest.approx(2.0, abs=0.02)
        assert by_name[str(good[1])]['field_width'] == pytest.approx(0.573, abs=0.01)

    def test_closing_early_stops_the_rest(self, data_copy, tmp_path, monkeypatch, private_tmpdir):
        pids = tmp_path / 'pids'
        fake = fake_program(tmp_path, 'solve-field', f'echo $$ >> {pids}\nexec sleep 60')
        monkeypatch.setenv('PATH', f'{fake}:/usr/bin:/bin')
        paths = [data_copy('tiny.fits', f'tiny{n}.fits') for n in range(3)]
        bad = tmp_path / 'missing.fits'
        results = fits.solve_fields([bad, *paths], jobs=2, timeout=60)
        started = time.monotonic()
        assert next(results)['filename'] == str(bad)
        deadline = started + 20
        while not pids.exists() or len(pids.read_text().split()) < 2:
            assert time.monotonic() < deadline, 'two solves did not start within 20 s'
            time.sleep(0.05)
        results.close()
        assert time.monotonic() - started < 10
        started_pids = [int(pid) for pid in pids.read_text().split()]
        assert len(started_pids) == 2
        assert not any(process_alive(pid) for pid in started_pids)
        assert files_in(private_tmpdir) == []


class TestGetWcsinfo:
    def test_fpacked(self, shared_data):
        info = fits.get_wcsinfo(shared_data / 'solved.fits.fz')
        assert_solution(info)
        assert (info['imagew'], info['imageh']) == (700 * u.pix, 700 * u.pix)
        assert info['wcs_file'] == str(shared_data / 'solved.fits.fz')

    def test_unsolved(self, shared_data):
        with pytest.raises(NotFound, match='no WCS'):
            fits.get_wcsinfo(shared_data / 'unsolved.fits')

    def test_not_fits(self, tmp_path):
        with pytest.raises(PanError, match='not a FITS file'):
            fits.get_wcsinfo(tmp_path / 'missing.fits')
