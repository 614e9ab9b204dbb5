"""panoptes_cli.images.cr2: decoding, PGM, EXIF and FITS conversion of Canon raw frames."""

import os
import sys

import numpy as np
import pytest

from conftest import require_program
from panoptes_cli.error import IllegalValue, InvalidSystemCommand
from panoptes_cli.images import conversion, cr2
from panoptes_cli.images.fits import getdata, getheader

SYNTHETIC = 'cr2/synthetic.cr2'
METADATA_ONLY = 'cr2/canon-eos350d-metadata-only.cr2'


@pytest.fixture
def truth(shared_data):
    """The synthetic CR2's pixels in FITS order: its decoder raster, bottom row first."""
    return np.flipud(np.load(shared_data / 'cr2' / 'synthetic.npy'))


@pytest.fixture
def without_programs(monkeypatch, tmp_path):
    """Put only the named programs (by symlink) on PATH."""

    def keep(*names):
        bin_dir = tmp_path / 'only-bin'
        bin_dir.mkdir(exist_ok=True)
        for name in names:
            os.symlink(require_program(name), bin_dir / name)
        monkeypatch.setenv('PATH', str(bin_dir))

    return keep


@pytest.mark.parametrize('decoder', ['auto', 'rawpy', 'dcraw'])
def test_every_decoder_gives_dcraws_pixels(data_copy, truth, decoder):
    require_program('dcraw')
    data = cr2.read_cr2(data_copy(SYNTHETIC), decoder=decoder)
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, truth)


def test_auto_falls_back_to_dcraw_without_rawpy(data_copy, truth, monkeypatch):
    require_program('dcraw')
    monkeypatch.setitem(sys.modules, 'rawpy', None)  # as if rawpy were not installed
    np.testing.assert_array_equal(cr2.read_cr2(data_copy(SYNTHETIC)), truth)
    with pytest.raises(InvalidSystemCommand, match='pip install rawpy'):
        cr2.read_cr2(data_copy(SYNTHETIC), decoder='rawpy')


def test_undecodable_file_names_the_file_and_both_reasons(data_copy):
    require_program('dcraw')
    path = data_copy(METADATA_ONLY)
    with pytest.raises(cr2.UndecodableRaw) as caught:
        cr2.read_cr2(path)
    message = str(caught.value.msg)
    assert message.startswith(f'{path}: cannot decode: LibRaw: ')
    assert 'dcraw: ' in message and '\n' not in message


def test_undecodable_without_dcraw_says_how_to_install_it(data_copy, without_programs):
    without_programs()
    with pytest.raises(cr2.UndecodableRaw, match='apt-get install dcraw'):
        cr2.read_cr2(data_copy(METADATA_ONLY))
    with pytest.raises(InvalidSystemCommand, match='apt-get install dcraw'):
        cr2.read_cr2(data_copy(SYNTHETIC), decoder='dcraw')


def test_missing_file_and_bad_decoder(tmp_path, data_copy):
    with pytest.raises(FileNotFoundError):
        cr2.read_cr2(tmp_path / 'nothing.cr2')
    with pytest.raises(IllegalValue):
        cr2.read_cr2(data_copy(SYNTHETIC), decoder='magic')


def test_cr2_to_pgm_is_dcraws_output(data_copy, truth):
    require_program('dcraw')
    path = data_copy(SYNTHETIC)
    pgm = cr2.cr2_to_pgm(path)
    assert pgm == str(path.with_suffix('.pgm'))
    np.testing.assert_array_equal(cr2.read_pgm(pgm), truth)
    with pytest.raises(FileExistsError):
        cr2.cr2_to_pgm(path, overwrite=False)
    assert cr2.cr2_to_pgm(path) == pgm  # overwrite=True is the default


def test_failed_pgm_leaves_nothing_behind(data_copy, tmp_path):
    require_program('dcraw')
    path = data_copy(METADATA_ONLY)
    with pytest.raises(cr2.UndecodableRaw, match='metadata-only.cr2: cannot decode: dcraw'):
        cr2.cr2_to_pgm(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['canon-eos350d-metadata-only.cr2',
                                                          'pandir']


@pytest.mark.parametrize('header', [
    b'P5 3 2 65535 ',                      # all on one line
    b'P5\n# comment\n3\n# another\n2\n65535\n',
    b'P5\t3\r\n2 65535\n',
])
def test_read_pgm_parses_any_valid_header(tmp_path, header):
    pgm = tmp_path / 'x.pgm'
    pgm.write_bytes(header + np.array([[1, 2, 3], [256, 512, 65535]], dtype='>u2').tobytes())
    # PGM rows run top first; the array is bottom row first (FITS order).
    np.testing.assert_array_equal(cr2.read_pgm(pgm), [[256, 512, 65535], [1, 2, 3]])
    assert cr2.read_pgm(pgm).dtype == np.uint16


def test_read_pgm_byte_samples_and_little_endian(tmp_path):
    pgm = tmp_path / 'x.pgm'
    pgm.write_bytes(b'P5 2 1 255\n' + bytes([7, 200]))
    assert cr2.read_pgm(pgm).tolist() == [[7, 200]]
    pgm.write_bytes(b'P5 2 1 65535\n' + np.array([1, 2], dtype='<u2').tobytes())
    assert cr2.read_pgm(pgm, byteorder='<').tolist() == [[1, 2]]


@pytest.mark.parametrize('content, why', [
    (b'P6 1 1 255\n\x00\x00\x00', 'magic'),
    (b'P5 2 2 65535\n\x00\x01', 'truncated'),
    (b'P5 2', 'truncated header'),
    (b'P5 a b c\n', 'bad header'),
    (b'P5 2 2 70000\n', 'maxval'),
])
def test_read_pgm_rejects_bad_files(tmp_path, content, why):
    pgm = tmp_path / 'x.pgm'
    pgm.write_bytes(content)
    with pytest.raises(IllegalValue, match=why):
        cr2.read_pgm(pgm)


@pytest.mark.slow
def test_read_exif(data_copy):
    require_program('exiftool')
    exif = cr2.read_exif(data_copy(SYNTHETIC))
    assert (exif['ExposureTime'], exif['ISO'], exif['DateTimeOriginal']) == (
        120, 100, '2016:09:09 08:11:52')
    real = cr2.read_exif(data_copy(METADATA_ONLY))
    assert real['Model'] == 'Canon EOS 350D DIGITAL'
    assert len(real) > 200


def test_read_exif_errors(tmp_path, data_copy, without_programs):
    require_program('exiftool')
    not_an_image = tmp_path / 'notes.cr2'
    not_an_image.write_bytes(b'\x00' * 100)
    with pytest.raises(IllegalValue, match='notes.cr2: cannot read EXIF'):
        cr2.read_exif(not_an_image)
    with pytest.raises(FileNotFoundError):
        cr2.read_exif(tmp_path / 'nothing.cr2')
    without_programs()
    with pytest.raises(InvalidSystemCommand, match='apt-get install libimage-exiftool-perl'):
        cr2.read_exif(data_copy(SYNTHETIC))


@pytest.mark.slow
def test_read_exif_batch_keeps_order_and_reports_each_failure(data_copy, tmp_path):
    require_program('exiftool')
    good = data_copy(SYNTHETIC)
    odd = data_copy(SYNTHETIC, "-odd name 'quoted'.cr2")
    bad = tmp_path / 'bad.cr2'
    bad.write_bytes(b'\x00' * 10)
    results = list(cr2.read_exif_batch([good, tmp_path / 'none.cr2', bad, odd], chunk_size=2))
    assert [os.path.basename(name) for name, _ in results] == [
        'synthetic.cr2', 'none.cr2', 'bad.cr2', "-odd name 'quoted'.cr2"]
    assert results[0][1]['ISO'] == 100 and results[3][1]['ISO'] == 100
    assert isinstance(results[1][1], FileNotFoundError)
    assert isinstance(results[2][1], IllegalValue)


def test_exif_headers_of_a_real_camera(data_copy):
    require_program('exiftool')
    headers = cr2.exif_headers(cr2.read_exif(data_copy(METADATA_ONLY)))
    assert headers['EXPTIME'][0] == pytest.approx(1 / 15)
    assert headers['DATE-OBS'] == '2005-08-03T18:59:18'
    assert headers['WBRGGB'][0] == '2002 1185 1187 2364'
    assert headers['CAMSN'][0] == '0123456789'
    assert all(value not in ('', None) for value in headers.values())


def test_cr2_to_fits(data_copy, truth):
    require_program('exiftool')
    path = data_copy(SYNTHETIC)
    fits_fn = cr2.cr2_to_fits(path, fits_headers={'observer': 'PAN001', 'GAIN': 1.5})
    assert fits_fn == str(path.with_suffix('.fits'))
    data = getdata(fits_fn)
    np.testing.assert_array_equal(data, truth)
    header = getheader(fits_fn)
    assert header['EXPTIME'] == 120.0
    assert header['ISO'] == 100
    assert header['DATE-OBS'] == '2016-09-09T08:11:52'
    assert header['FILTER'] == 'RGGB'
    assert header['CAMSN'] == '12345678'
    assert (header['OBSERVER'], header['GAIN']) == ('PAN001', 1.5)
    assert path.exists()


def test_cr2_to_fits_adds_observation_headers(data_copy, tmp_path):
    require_program('exiftool')
    fits_fn = cr2.cr2_to_fits(data_copy(SYNTHETIC), tmp_path / 'out.fits',
                              headers={'field_name': 'Tabbys Star', 'image_id': 'PAN001_x_y'})
    header = getheader(fits_fn)
    assert header['FIELD'] == 'Tabbys Star'
    assert header['IMAGEID'] == 'PAN001_x_y'
    assert header['EXPTIME'] == 120.0


@pytest.mark.slow
def test_cr2_to_fits_overwrite_and_names(data_copy, tmp_path):
    require_program('exiftool')
    path = data_copy(SYNTHETIC, 'IMG_0001.CR2')
    fits_fn = cr2.cr2_to_fits(path)
    assert os.path.basename(fits_fn) == 'IMG_0001.fits'  # never the CR2's own name
    mtime = os.stat(fits_fn).st_mtime_ns
    with pytest.raises(FileExistsError):
        cr2.cr2_to_fits(path)
    assert os.stat(fits_fn).st_mtime_ns == mtime
    cr2.cr2_to_fits(path, overwrite=True, remove_cr2=True)
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['IMG_0001.fits', 'pandir']


def test_cr2_to_fits_keeps_the_cr2_when_it_fails(data_copy, tmp_path):
    require_program('exiftool')
    require_program('dcraw')
    path = data_copy(METADATA_ONLY)
    with pytest.raises(cr2.UndecodableRaw):
        cr2.cr2_to_fits(path, remove_cr2=True)
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, 'pandir']


def test_cr2_to_fits_fpacked(data_copy, truth, tmp_path):
    require_program('exiftool')
    fits_fn = cr2.cr2_to_fits(data_copy(SYNTHETIC), tmp_path / 'x.fits.fz')
    np.testing.assert_array_equal(getdata(fits_fn), truth)
    assert getheader(fits_fn)['ISO'] == 100


@pytest.mark.slow
@pytest.mark.parametrize('to', ['fits', 'pgm', 'jpg'])
def test_convert_to_each_format_into_a_directory(data_copy, tmp_path, to):
    require_program('exiftool')
    require_program('dcraw')
    path = data_copy(SYNTHETIC)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    result = conversion.convert(path, to=to, output_dir=out_dir, remove_cr2=True)
    assert result == str(out_dir / f'synthetic.{to}')
    assert os.path.getsize(result) > 0
    assert not path.exists()


def test_convert_refuses_before_working(data_copy, tmp_path):
    path = data_copy(SYNTHETIC)
    (tmp_path / 'synthetic.jpg').write_text('keep me')
    with pytest.raises(FileExistsError):
        conversion.convert(path, to='jpg')
    assert (tmp_path / 'synthetic.jpg').read_text() == 'keep me'
    with pytest.raises(IllegalValue):
        conversion.convert(path, to='tiff')
    with pytest.raises(FileNotFoundError):
        conversion.convert(path, output_dir=tmp_path / 'missing')


# --- Orientation: row 0 is the bottom, for every decoder -----------------------------------

@pytest.fixture
def bayer_cr2(tmp_path):
    """A CR2 whose R, G1, G2 and B photosites hold 1000, 2000, 2100 and 3000."""
    pytest.importorskip('imagecodecs', reason='tests/cr2_maker.py needs imagecodecs')
    from cr2_maker import bayer_frame, write_cr2

    return write_cr2(tmp_path / 'bayer.cr2', bayer_frame(24, 36))


@pytest.mark.parametrize('decoder', ['rawpy', 'dcraw'])
def test_frames_are_bottom_row_first_with_the_manuals_bayer_pattern(bayer_cr2, decoder):
    from panoptes_cli.images.bayer import get_rgb_data

    require_program('dcraw')
    data = cr2.read_cr2(bayer_cr2, decoder=decoder)
    # The manual's table: row 0 = G2 B, row 1 = R G1.
    assert data[:2, :2].tolist() == [[2100, 3000], [1000, 2000]]
    red, green, blue = get_rgb_data(data)
    assert (red.mean(), green.mean(), blue.mean()) == (1000, 2050, 3000)
    red, green1, green2, blue = get_rgb_data(data, separate_green=True)
    assert (green1.mean(), green2.mean()) == (2000, 2100)


@pytest.mark.parametrize('decoder', ['rawpy', 'dcraw'])
def test_fits_from_a_cr2_is_the_decoder_raster_flipped(bayer_cr2, tmp_path, decoder):
    from cr2_maker import bayer_frame

    require_program('dcraw')
    require_program('exiftool')
    fits_fn = cr2.cr2_to_fits(bayer_cr2, tmp_path / 'bayer.fits', decoder=decoder)
    np.testing.assert_array_equal(getdata(fits_fn), np.flipud(bayer_frame(24, 36)))


def test_pgm_route_gives_the_same_orientation(bayer_cr2, tmp_path):
    require_program('dcraw')
    pgm = cr2.cr2_to_pgm(bayer_cr2, tmp_path / 'bayer.pgm')
    np.testing.assert_array_equal(cr2.read_pgm(pgm), cr2.read_cr2(bayer_cr2, decoder='rawpy'))


@pytest.mark.slow
def test_pretty_pictures_of_a_cr2_and_of_its_fits_are_the_same_way_up(tmp_path):
    """A frame bright at the top of the camera's picture is bright at the top of both JPGs."""
    pytest.importorskip('imagecodecs', reason='tests/cr2_maker.py needs imagecodecs')
    from PIL import Image

    from cr2_maker import sky_frame, write_cr2
    from panoptes_cli.images import make_pretty_image

    require_program('dcraw')
    require_program('exiftool')
    raster = sky_frame(120, 160, seed=1)
    raster[:30] = 12000  # the top quarter of the picture the camera took
    path = write_cr2(tmp_path / 'sky.cr2', raster)
    fits_fn = cr2.cr2_to_fits(path, tmp_path / 'sky.fits')
    (tmp_path / 'from_fits').mkdir()
    pictures = [make_pretty_image(path), make_pretty_image(fits_fn, output_dir=tmp_path / 'from_fits')]
    for jpg in pictures:
        grey = np.asarray(Image.open(jpg).convert('L'), dtype=float)
        picture = grey[-60:]  # below the title band: 60 super-pixel rows
        assert picture[:10].mean() > picture[-10:].mean() + 50, jpg
    first, second = (np.asarray(Image.open(jpg).convert('L'), dtype=float)[-60:] for jpg in pictures)
    assert np.abs(first - second).mean() < 2
