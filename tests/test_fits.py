"""panoptes_cli.images.fits: reading, writing and header updates."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits as afits
from conftest import require_program

from panoptes_cli.error import IllegalValue, PanError
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
        with pytest.raises(IllegalValue, match='cannot be written as FITS'):
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


class TestUpdateObservationHeaders:
    STATUS = {
        'image_id': 'PAN012_ee04d1_20190820T122447', 'sequence_id': 'PAN012_ee04d1_20190820T111638',
        'field_name': 'Tabbys Star', 'ra_mnt': 301.5 * u.deg, 'ha_mnt': 1.0, 'dec_mnt': 44.4,
        'equinox': 2000.0, 'airmass': 1.13, 'filter': 'RGGB', 'latitude': '19.54 deg',
        'longitude': -155.58 * u.deg, 'elevation': 3.4 * u.km, 'moon_separation': 75.9,
        'moon_fraction': 0.48, 'creator': 'POCSv0.7', 'camera_uid': 'ee04d1', 'observer': 'PAN012',
        'origin': 'Project PANOPTES', 'tracking_rate_ra': 1.002,
    }

    @pytest.mark.slow
    @pytest.mark.parametrize('name', ['unsolved.fits', 'solved.fits.fz'])
    def test_every_keyword(self, data_copy, name):
        path = data_copy(name)
        before = fits.getdata(path)
        fits.update_observation_headers(path, self.STATUS)
        header = fits.getheader(path)
        assert header['IMAGEID'] == 'PAN012_ee04d1_20190820T122447'
        assert header['SEQID'] == 'PAN012_ee04d1_20190820T111638'
        assert header['FIELD'] == 'Tabbys Star'
        assert header['RA-MNT'] == 301.5 and header.comments['RA-MNT'] == 'Degrees'
        assert header['LAT-OBS'] == pytest.approx(19.54)
        assert header['LONG-OBS'] == pytest.approx(-155.58)
        assert header['ELEV-OBS'] == pytest.approx(3400.0)
        assert header.comments['ELEV-OBS'] == 'Meters'
        assert header['INSTRUME'] == 'ee04d1' and header['OBSERVER'] == 'PAN012'
        assert header['RA-RATE'] == 1.002 and header.comments['RA-RATE'] == 'RA Tracking Rate'
        for keyword in ('HA-MNT', 'DEC-MNT', 'EQUINOX', 'AIRMASS', 'FILTER', 'MOONSEP',
                        'MOONFRAC', 'CREATOR', 'ORIGIN'):
            assert keyword in header
        assert np.array_equal(fits.getdata(path), before)
        assert sorted(p.name for p in path.parent.iterdir() if p.is_file()) == [name]

    def test_missing_keys_leave_headers_alone(self, data_copy):
        path = data_copy('unsolved.fits')
        fits.update_observation_headers(path, {'field_name': 'Tabbys Star'})
        assert fits.getval(path, 'FIELD') == 'Tabbys Star'
        assert fits.getval(path, 'IMAGEID') == IMAGEID
        assert fits.getval(path, 'RA-MNT') == 301.56439

    def test_checksums_are_renewed(self, data_copy):
        path = data_copy('unsolved.fits')
        fits.update_observation_headers(path, {'field_name': 'Tabbys Star'})
        with afits.open(path, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1 and hdul[0].verify_datasum() == 1

    def test_not_a_fits_file(self, bad_files):
        with pytest.raises(PanError, match='not a FITS file'):
            fits.update_observation_headers(bad_files['truncated'], {'field_name': 'x'})


def _raw_images(path):
    """The stored (unscaled) bytes and the header cards of every image in a file."""
    images = []
    with afits.open(path, do_not_scale_image_data=True) as hdul:
        for hdu in hdul:
            if hdu.is_image and hdu.data is not None:
                # astropy's tile compression gives EXTNAME a comment of its own.
                cards = {(c.keyword, str(c.value), '' if c.keyword == 'EXTNAME' else c.comment)
                         for c in hdu.header.cards
                         if c.keyword not in ('CHECKSUM', 'DATASUM', 'EXTEND', 'XTENSION',
                                              'SIMPLE', 'PCOUNT', 'GCOUNT')}
                images.append((hdu.data.dtype.str, hdu.data.tobytes(), cards))
            elif not hdu.is_image:
                images.append(('table', hdu.data.tobytes(), hdu.header['EXTNAME']))
    return images


@pytest.fixture(params=['binaries', 'astropy'])
def packer(request, monkeypatch):
    """Run fpack/funpack with cfitsio's binaries, or with them hidden from the PATH."""
    if request.param == 'binaries':
        require_program('fpack')
        require_program('funpack')
    else:
        monkeypatch.setenv('PATH', '/nonexistent')
    return request.param


def _make_test_images(directory):
    """Images of every kind a pack must keep bit for bit."""
    rng = np.random.default_rng(5)
    files = {}
    files['float32.fits'] = afits.HDUList([afits.PrimaryHDU(
        rng.normal(100, 5, (64, 48)).astype(np.float32))])
    files['int32.fits'] = afits.HDUList([afits.PrimaryHDU(
        rng.integers(-2**30, 2**30, (40, 30), dtype=np.int32))])
    # Scaled integers whose physical values are not integers.
    scaled = afits.PrimaryHDU(rng.integers(-300, 300, (30, 20), dtype=np.int16))
    scaled.header['BSCALE'] = 0.5
    scaled.header['BZERO'] = 1000
    files['scaled.fits'] = afits.HDUList([scaled])
    table = afits.BinTableHDU.from_columns(
        [afits.Column('flux', 'E', array=np.arange(5, dtype=np.float32))], name='STARS')
    files['multi.fits'] = afits.HDUList([
        afits.PrimaryHDU(rng.integers(0, 4000, (50, 40)).astype(np.uint16)),
        afits.ImageHDU(rng.integers(0, 100, (10, 10)).astype(np.int16), name='SMALL'),
        table])
    paths = []
    for name, hdul in files.items():
        path = directory / name
        if name == 'scaled.fits':
            # Write the integers as stored, not rescaled.
            hdul.writeto(path, output_verify='silentfix')
        else:
            hdul.writeto(path)
        paths.append(path)
    return paths


class TestFpack:
    @pytest.mark.slow
    def test_round_trip_is_bit_exact(self, data_copy, tmp_path, packer):
        paths = [data_copy('unsolved.fits'), *_make_test_images(tmp_path)]
        for path in paths:
            before = _raw_images(path)
            packed = fits.fpack(path)
            assert packed == f'{path}.fz'
            assert not path.exists()
            assert fits.getdata(packed).shape == fits.getdata(packed).shape
            unpacked = fits.funpack(packed)
            assert unpacked == str(path) and not Path(packed).exists()
            assert _raw_images(path) == before, path.name

    def test_packed_by_one_unpacked_by_the_other(self, data_copy, monkeypatch):
        require_program('fpack')
        require_program('funpack')
        path = data_copy('unsolved.fits')
        before = _raw_images(path)
        packed = fits.fpack(path)
        monkeypatch.setenv('PATH', '/nonexistent')
        fits.funpack(packed)
        assert _raw_images(path) == before
        fits.fpack(path)
        monkeypatch.undo()
        fits.funpack(packed)
        assert _raw_images(path) == before

    def test_binaries_are_used_when_installed(self, data_copy, tmp_path, monkeypatch):
        real = {name: require_program(name) for name in ('fpack', 'funpack')}
        wrappers = tmp_path / 'bin'
        wrappers.mkdir()
        log = tmp_path / 'calls.log'
        for name, path in real.items():
            script = wrappers / name
            script.write_text(f'#!/bin/sh\necho {name} >> {log}\nexec {path} "$@"\n')
            script.chmod(0o755)
        monkeypatch.setenv('PATH', str(wrappers))
        fits.funpack(fits.fpack(data_copy('tiny.fits')))
        assert log.read_text().split() == ['fpack', 'funpack']

    def test_solved_fz_unpacks(self, data_copy, packer):
        packed = data_copy('solved.fits.fz')
        data = fits.getdata(packed)
        unpacked = fits.funpack(packed, keep_original=True)
        assert Path(packed).exists()
        assert np.array_equal(fits.getdata(unpacked), data)
        assert fits.getwcs(unpacked).is_celestial
        with afits.open(unpacked) as hdul:
            assert len(hdul) == 1 and hdul[0].data.dtype == np.uint16

    def test_overwrite(self, data_copy, packer):
        path = data_copy('tiny.fits')
        existing = Path(f'{path}.fz')
        existing.write_bytes(b'an older file')
        with pytest.raises(FileExistsError):
            fits.fpack(path, overwrite=False)
        assert path.exists() and existing.read_bytes() == b'an older file'
        fits.fpack(path)
        assert fits.getval(existing, 'IMAGEID') == IMAGEID and not path.exists()

    def test_keep_original(self, data_copy, packer):
        path = data_copy('tiny.fits')
        packed = fits.fpack(path, keep_original=True)
        assert path.exists() and Path(packed).exists()

    @pytest.mark.parametrize('kind', ['missing', 'truncated', 'text', 'empty'])
    def test_bad_input_keeps_everything(self, bad_files, kind, packer):
        path = bad_files[kind]
        before = set(path.parent.iterdir())
        with pytest.raises(PanError) as info:
            fits.fpack(path)
        assert info.value.msg.startswith(f'{path}: not a FITS file (')
        assert set(path.parent.iterdir()) == before

    def test_wrong_direction(self, data_copy, tmp_path, packer):
        with pytest.raises(PanError, match='already packed'):
            fits.fpack(data_copy('solved.fits.fz'))
        with pytest.raises(PanError, match='cannot unpack'):
            fits.funpack(data_copy('tiny.fits'))
        disguised = tmp_path / 'plain.fits.fz'
        disguised.write_bytes((tmp_path / 'tiny.fits').read_bytes())
        with pytest.raises(PanError, match='no compressed image'):
            fits.funpack(disguised)
        packed_plain_name = tmp_path / 'packed.fits'
        packed_plain_name.write_bytes((tmp_path / 'solved.fits.fz').read_bytes())
        with pytest.raises(PanError, match='already packed'):
            fits.fpack(packed_plain_name)

    def test_failing_tool_keeps_original(self, data_copy, tmp_path, monkeypatch):
        # An fpack that writes half a file and succeeds: the check must catch it.
        fake = tmp_path / 'bin'
        fake.mkdir()
        script = fake / 'fpack'
        script.write_text('#!/bin/sh\nwhile [ "$1" != "-O" ]; do shift; done\n'
                          '/usr/bin/head -c 5000 "$3" > "$2"\n')
        script.chmod(0o755)
        monkeypatch.setenv('PATH', str(fake))
        path = data_copy('tiny.fits')
        with pytest.raises(PanError, match='tiny.fits.fz: not a FITS file'):
            fits.fpack(path)
        assert path.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ['tiny.fits']

    def test_tool_error_is_reported(self, data_copy, tmp_path, monkeypatch):
        fake = tmp_path / 'bin'
        fake.mkdir()
        script = fake / 'funpack'
        script.write_text('#!/bin/sh\necho "Error: disk on fire" >&2\nexit 3\n')
        script.chmod(0o755)
        monkeypatch.setenv('PATH', str(fake))
        path = data_copy('solved.fits.fz')
        with pytest.raises(PanError, match=r'funpack failed \(Error: disk on fire\)'):
            fits.funpack(path)
        assert path.exists() and not (tmp_path / 'solved.fits').exists()


class TestHeaderRecord:
    """The fast header reader gives what astropy gives, or leaves the header to astropy."""

    @staticmethod
    def astropy_values(path, index):
        values = {}
        with afits.open(path) as hdul:
            for card in hdul[index].header.cards:
                if card.keyword in ('COMMENT', 'HISTORY'):
                    values.setdefault(card.keyword, []).append(str(card.value))
                elif card.keyword:
                    values[card.keyword] = card.value
        return values

    def test_same_values_as_astropy(self, shared_data, tmp_path, data_copy):
        from panoptes_cli.images._fits_structure import walk

        packed = fits.fpack(data_copy('unsolved.fits'), keep_original=True)
        paths = [shared_data / name for name in
                 ('unsolved.fits', 'solved.fits.fz', 'tiny.fits', 'noheader.fits')]
        paths += [Path(packed), *_make_test_images(tmp_path)]
        for path in paths:
            for index in range(len(walk(path))):
                record = fits.header_record(path, ext=index)
                assert record['hdu'] == index
                assert record['header'] == self.astropy_values(path, index), (path, index)

    def test_unusual_cards_are_read_by_astropy(self, tmp_path):
        header = afits.Header()
        header['LONGSTR'] = 'x' * 100
        header['HIERARCH ESO DET CHIP'] = 'CCD 1'
        header['CPLX'] = complex(1, 2)
        header['QUOTE'] = "it's"
        path = tmp_path / 'unusual.fits'
        afits.writeto(path, np.zeros((2, 2), dtype=np.int16), header)
        values = fits.header_record(path)['header']
        assert values['LONGSTR'] == 'x' * 100
        assert values['ESO DET CHIP'] == 'CCD 1'
        assert values['CPLX'] == [1.0, 2.0]
        assert values['QUOTE'] == "it's"

    def test_extension_names(self, shared_data):
        packed = shared_data / 'solved.fits.fz'
        assert fits.header_record(packed)['hdu'] == 1
        assert fits.header_record(packed, ext='PRIMARY')['hdu'] == 0
        assert fits.header_record(packed, ext='compressed_image')['hdu'] == 1
        assert fits.header_record(packed, ext=-1)['hdu'] == 1
        with pytest.raises(KeyError, match='no extension'):
            fits.header_record(packed, ext='SCI')
        with pytest.raises(KeyError, match='no extension 2'):
            fits.header_record(packed, ext=2)

    def test_keywords(self, shared_data):
        record = fits.header_record(shared_data / 'tiny.fits', ['imageid', 'MISSING'])
        assert record['header'] == {'imageid': IMAGEID, 'MISSING': None}
