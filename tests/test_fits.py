"""panoptes_cli.images.fits: reading, writing and header updates."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits as afits

from panoptes_cli.error import PanError
from panoptes_cli.images import fits

IMAGEID = 'PAN001_XXXXXX_20160909T081152'


@pytest.fixture
def bad_files(tmp_path, shared_data):
    """A missing, a truncated, an empty, a text and a header-only-truncated file."""
    raw = (shared_data / 'unsolved.fits').read_bytes()
    files = {
        'missing': tmp_path / 'missing.fits',
        'truncated': tmp_path / 'truncated.fits',
        'empty': tmp_path / 'empty.fits',
        'text': tmp_path / 'notes.fits',
        'cut-header': tmp_path / 'cut-header.fits',
    }
    files['truncated'].write_bytes(raw[:500_000])
    files['empty'].write_bytes(b'')
    files['text'].write_text('not a FITS file\n')
    files['cut-header'].write_bytes(raw[:2000])
    return files


class TestReaders:
    @pytest.mark.parametrize('as_path', [str, Path])
    def test_plain_and_fpacked(self, shared_data, as_path):
        plain = as_path(shared_data / 'unsolved.fits')
        packed = as_path(shared_data / 'solved.fits.fz')
        assert fits.getheader(plain)['IMAGEID'] == IMAGEID
        assert fits.getheader(packed)['IMAGEID'] == IMAGEID
        assert fits.getval(packed, 'NAXIS1') == 700
        assert 'ZIMAGE' not in fits.getheader(packed)
        data = fits.getdata(packed)
        assert data.shape == (700, 700) and data.dtype == np.uint16
        assert fits.getdata(plain).dtype == np.uint16

    def test_getdata_with_header(self, shared_data):
        data, header = fits.getdata(shared_data / 'solved.fits.fz', header=True)
        assert header['CTYPE1'] == 'RA---TAN-SIP'
        assert data.shape == (header['NAXIS2'], header['NAXIS1'])

    def test_explicit_extension_is_respected(self, shared_data):
        packed = shared_data / 'solved.fits.fz'
        assert fits.getheader(packed, 0)['NAXIS'] == 0
        assert fits.getheader(packed, ext=0)['NAXIS'] == 0
        assert fits.getval(packed, 'NAXIS', 0) == 0

    def test_compressed_file_without_fz_name(self, tmp_path, shared_data):
        # A tile-compressed file under a .fits name still reads its image HDU.
        target = tmp_path / 'compressed.fits'
        target.write_bytes((shared_data / 'solved.fits.fz').read_bytes())
        assert fits.getheader(target)['IMAGEID'] == IMAGEID
        assert fits.getdata(target).shape == (700, 700)

    def test_getwcs(self, shared_data):
        assert fits.getwcs(shared_data / 'solved.fits.fz').is_celestial
        assert not fits.getwcs(shared_data / 'unsolved.fits').is_celestial

    def test_getvalue_alias_and_missing_keyword(self, shared_data):
        assert fits.getvalue(shared_data / 'tiny.fits', 'FIELD') == 'KIC 8462852'
        with pytest.raises(KeyError):
            fits.getval(shared_data / 'tiny.fits', 'NOSUCHKEY')

    @pytest.mark.parametrize('kind, reason', [
        ('missing', 'no such file'),
        ('truncated', 'truncated: 500000 of 987840 bytes'),
        ('empty', 'empty or corrupt FITS file'),
        ('text', 'no SIMPLE card found'),
        ('cut-header', 'empty or corrupt FITS file'),
    ])
    @pytest.mark.parametrize('reader', ['getheader', 'getdata', 'getwcs', 'getval'])
    def test_bad_files(self, bad_files, kind, reason, reader):
        path = bad_files[kind]
        args = ('IMAGEID',) if reader == 'getval' else ()
        with pytest.raises(PanError) as info:
            getattr(fits, reader)(path, *args)
        assert info.value.msg == f'{path}: not a FITS file ({reason})'

    def test_directory(self, tmp_path):
        with pytest.raises(PanError, match='not a FITS file'):
            fits.getheader(tmp_path)


class TestWriteFits:
    @pytest.fixture
    def outdir(self, tmp_path):
        # A directory of its own, so that listing it shows only what write_fits left.
        path = tmp_path / 'out'
        path.mkdir()
        return path

    def test_round_trip_and_event(self, outdir):
        data = np.arange(12, dtype=np.uint16).reshape(3, 4)
        event = threading.Event()
        target = outdir / 'out.fits'
        fits.write_fits(data, {'FIELD': 'Tabbys', 'EXPTIME': (120.4, 'Seconds')}, target,
                        exposure_event=event)
        assert event.is_set()
        read, header = fits.getdata(target, header=True)
        assert np.array_equal(read, data) and read.dtype == np.uint16
        assert header['FIELD'] == 'Tabbys'
        assert header.comments['EXPTIME'] == 'Seconds'
        assert [p.name for p in outdir.iterdir()] == ['out.fits']

    def test_values_astropy_cannot_store_are_converted(self, outdir):
        from astropy.time import Time

        target = outdir / 'out.fits'
        fits.write_fits(np.zeros((2, 2)), {
            'ELEV-OBS': 3400 * u.m, 'DATE-OBS': Time('2016-09-09T08:12:26'),
            'COUNT': np.int64(3), 'OK': np.bool_(True)}, target)
        header = fits.getheader(target)
        assert header['ELEV-OBS'] == 3400.0
        assert header['DATE-OBS'] == '2016-09-09T08:12:26.000'
        assert header['COUNT'] == 3 and header['OK'] is True

    def test_astropy_header_keeps_comments(self, shared_data, outdir):
        data, header = fits.getdata(shared_data / 'tiny.fits', header=True)
        target = outdir / 'copy.fits'
        fits.write_fits(data, header, target)
        copy = fits.getheader(target)
        assert copy['IMAGEID'] == IMAGEID
        assert copy.comments['RA-MNT'] == 'Degrees'
        assert np.array_equal(fits.getdata(target), data)

    def test_fz_name_writes_compressed(self, outdir):
        data = np.random.default_rng(1).integers(0, 4000, (50, 60), dtype=np.uint16)
        target = outdir / 'out.fits.fz'
        fits.write_fits(data, {'IMAGEID': 'x'}, target)
        with afits.open(target) as hdul:
            assert isinstance(hdul[1], afits.CompImageHDU)
            assert hdul[1].compression_type == 'RICE_1'
        assert np.array_equal(fits.getdata(target), data)
        assert fits.getval(target, 'IMAGEID') == 'x'

    def test_no_clobber_by_default(self, outdir):
        target = outdir / 'out.fits'
        target.write_bytes(b'precious')
        with pytest.raises(FileExistsError):
            fits.write_fits(np.zeros(3), {}, target)
        assert target.read_bytes() == b'precious'
        fits.write_fits(np.ones(3), {}, target, overwrite=True)
        assert fits.getdata(target).tolist() == [1, 1, 1]
        assert len(list(outdir.iterdir())) == 1

    def test_failure_leaves_nothing_and_sets_event(self, outdir):
        event = threading.Event()
        target = outdir / 'out.fits'
        target.write_bytes(b'old')
        with pytest.raises(Exception):
            # An object array cannot be written as FITS.
            fits.write_fits(np.array([object()]), {}, target, event, overwrite=True)
        assert event.is_set()
        assert target.read_bytes() == b'old'
        assert [p.name for p in outdir.iterdir()] == ['out.fits']

    def test_missing_directory_raises(self, outdir):
        with pytest.raises(OSError):
            fits.write_fits(np.zeros(3), {}, outdir / 'nowhere' / 'out.fits')

    def test_new_file_follows_umask(self, outdir):
        old = os.umask(0o022)
        try:
            fits.write_fits(np.zeros(3), {}, outdir / 'out.fits')
        finally:
            os.umask(old)
        assert (outdir / 'out.fits').stat().st_mode & 0o777 == 0o644
