"""panoptes_cli.images: crops, saturation masks, pretty JPGs and timelapses."""

import json
import os
import subprocess

import numpy as np
import pytest
from astropy import units as u

from conftest import require_program
from panoptes_cli.error import IllegalValue, InvalidSystemCommand, NotFound, Timeout
from panoptes_cli.images import (
    crop_data, make_pretty_image, make_timelapse, mask_saturated, pretty_image_path, read_image,
    timelapse_path)
from panoptes_cli.images.fits import getdata, getwcs, write_fits


def jpg_pixels(path):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == 'JPEG'
        return np.asarray(image)


# --- crop_data and mask_saturated -------------------------------------------------------

def test_crop_data_centre_and_position(shared_data):
    data = getdata(shared_data / 'unsolved.fits')
    crop = crop_data(data)
    np.testing.assert_array_equal(crop, data[250:450, 250:450])
    np.testing.assert_array_equal(crop_data(data, box_width=10, center=(100, 50)),
                                  data[45:55, 95:105])


def test_crop_data_with_wcs(shared_data):
    data = getdata(shared_data / 'solved.fits.fz')
    wcs = getwcs(shared_data / 'solved.fits.fz')
    cutout = crop_data(data, box_width=100, data_only=False, wcs=wcs)
    assert cutout.data.shape == (100, 100)
    # The cropped WCS puts the same sky position on the same pixel.
    sky = wcs.pixel_to_world(350, 350)
    x, y = cutout.wcs.world_to_pixel(sky)
    assert (float(x), float(y)) == pytest.approx((50, 50), abs=1e-6)


def test_crop_data_too_big():
    with pytest.raises(IllegalValue):
        crop_data(np.zeros((300, 100)))


def test_mask_saturated_levels():
    data = np.array([0, 100, 200, 255], dtype=np.uint8)
    assert mask_saturated(data).mask.tolist() == [False, False, False, True]
    assert mask_saturated(data, threshold=0.5).mask.tolist() == [False, False, True, True]
    assert mask_saturated(data, saturation_level=0).mask.tolist() == [False, True, True, True]
    assert mask_saturated(data, bit_depth=8 * u.bit).mask.tolist() == [False, False, False, True]
    with pytest.raises(IllegalValue):
        mask_saturated(np.ones(3), bit_depth=3 * u.s)


# --- pretty pictures --------------------------------------------------------------------

@pytest.mark.slow
def test_pretty_fits_is_a_colour_star_field(data_copy):
    fits_fn = data_copy('unsolved.fits')
    jpg = make_pretty_image(fits_fn)
    assert jpg == str(fits_fn.with_suffix('.jpg'))
    pixels = jpg_pixels(jpg)
    # One pixel per 2x2 super-pixel, plus a title band above.
    assert pixels.shape[1] == 350 and pixels.shape[0] > 350 and pixels.shape[2] == 3
    sky = pixels[-350:]
    # Not a black (or white) square: a dark but visible sky and bright stars.
    assert 5 < np.median(sky) < 120
    assert np.percentile(sky, 99.9) > 200
    # The sky is made neutral grey: channel medians close together.
    medians = np.median(sky.reshape(-1, 3), axis=0)
    assert medians.max() - medians.min() < 12


def test_pretty_picture_is_upright(tmp_path):
    # A star in the top rows of the sky (high FITS y = high numpy row) is at the top.
    data = np.full((200, 300), 1000, dtype=np.uint16)
    data += np.random.default_rng(0).poisson(30, data.shape).astype(np.uint16)
    data[180:184, 100:104] = 60000
    fits_fn = tmp_path / 'upright.fits'
    write_fits(data, {'FIELD': 'Test'}, fits_fn)
    pixels = jpg_pixels(make_pretty_image(fits_fn))
    sky = pixels[-200:]
    row, col = np.unravel_index(np.argmax(sky), sky.shape)
    assert (row, col) == pytest.approx((200 - 182, 101), abs=3)


def test_pretty_fits_default_title_and_link(data_copy, tmp_path):
    fits_fn = data_copy('solved.fits.fz')
    link = tmp_path / 'latest.jpg'
    link.symlink_to('elsewhere.jpg')  # an old link is replaced
    jpg = make_pretty_image(fits_fn, link_path=link)
    assert jpg == str(tmp_path / 'solved.jpg')
    assert os.readlink(link) == str(tmp_path / 'solved.jpg')
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []


def test_pretty_title_text():
    from panoptes_cli.images.pretty import _title

    assert _title('KIC 8462852', 120.4, 'RGGB', '2016-09-09T08:12:26') == (
        'KIC 8462852 (120.4s RGGB) 2016-09-09 08:12:26')


def test_pretty_grey_for_plain_fits(data_copy):
    jpg = make_pretty_image(data_copy('noheader.fits'), title='No header here')
    pixels = jpg_pixels(jpg)
    assert pixels.ndim == 2 and pixels.shape[1] == 200
    assert 5 < np.median(pixels[-200:]) < 140


def test_pretty_cr2(data_copy):
    require_program('exiftool')
    jpg = make_pretty_image(data_copy('cr2/synthetic.cr2'))
    pixels = jpg_pixels(jpg)
    assert pixels.shape[1] == 260 and pixels.shape[2] == 3
    assert np.percentile(pixels, 99.9) > 200 and 5 < np.median(pixels[-174:]) < 140


@pytest.mark.parametrize('source', [pytest.param('full-size cr2', marks=pytest.mark.slow),
                                    'unsolved.fits', 'noheader.fits', 'uint8 bayer', 'int32 grey'])
def test_pretty_lookup_tables_give_the_per_pixel_picture(source, shared_data, tmp_path,
                                                         monkeypatch):
    """Integer frames go through one table per channel; the JPG is that of stretching
    every pixel (the way pictures were made before the tables, and still are for floats)."""
    from panoptes_cli.images import pretty

    if source == 'full-size cr2':
        require_program('exiftool')
        pytest.importorskip('imagecodecs', reason='cr2_maker needs imagecodecs (the test extra)')
        from cr2_maker import sky_frame, write_cr2

        frame = write_cr2(tmp_path / '20160909T081152.cr2', sky_frame(3476, 5208, seed=4))
    elif source.endswith('.fits'):
        frame = shared_data / source
    else:
        data = getdata(shared_data / 'unsolved.fits')
        header = {'FILTER': 'RGGB'} if source == 'uint8 bayer' else {}
        data = (data // 256).astype(np.uint8) if source == 'uint8 bayer' else data.astype(np.int32)
        frame = tmp_path / 'frame.fits'
        write_fits(data, header, frame)
    pictures = []
    for per_pixel in (False, True):
        if per_pixel:
            monkeypatch.setattr(pretty, '_table_size', lambda channel: None)
        jpg = make_pretty_image(frame, title='A frame', jpg_fname=tmp_path / f'{per_pixel}.jpg')
        pictures.append(jpg_pixels(jpg).astype(int))
    tables, per_pixel = pictures
    assert tables.shape == per_pixel.shape
    assert np.abs(tables - per_pixel).max() <= 1
    # In fact the same: every value goes through the same float32 arithmetic.
    assert (tables == per_pixel).all()


def test_pretty_errors(data_copy, tmp_path):
    with pytest.raises(FileNotFoundError):
        make_pretty_image(tmp_path / 'nothing.fits')
    notes = tmp_path / 'notes.txt'
    notes.write_text('hello')
    with pytest.raises(IllegalValue, match='not a CR2 or FITS'):
        make_pretty_image(notes)
    fits_fn = data_copy('tiny.fits')
    with pytest.raises(FileNotFoundError):
        make_pretty_image(fits_fn, link_path=tmp_path / 'missing' / 'latest.jpg')
    make_pretty_image(fits_fn)
    with pytest.raises(FileExistsError):
        make_pretty_image(fits_fn, overwrite=False)


def test_pretty_undecodable_cr2_leaves_nothing(data_copy, tmp_path):
    require_program('exiftool')
    path = data_copy('cr2/canon-eos350d-metadata-only.cr2')
    from panoptes_cli.images.cr2 import UndecodableRaw

    with pytest.raises(UndecodableRaw):
        make_pretty_image(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, 'pandir']


def test_output_names():
    assert str(pretty_image_path('a/b.FITS')) == 'a/b.jpg'
    assert str(pretty_image_path('a/b.fits.fz')) == 'a/b.jpg'
    assert str(pretty_image_path('a/b.fit')) == 'a/b.jpg'
    assert str(timelapse_path('/x/field/cam/20200101T000000')) == (
        '/x/field/cam/20200101T000000/field_cam_20200101T000000.mp4')


def test_read_image_reads_fits_and_cr2(shared_data):
    assert read_image(shared_data / 'solved.fits.fz').shape == (700, 700)
    assert read_image(shared_data / 'cr2' / 'synthetic.cr2').dtype == np.uint16


# --- timelapses -------------------------------------------------------------------------

@pytest.fixture
def frames(tmp_path):
    """Six 20160909T0812NN.jpg star-field frames, and a pointing image to leave out."""
    require_program('ffmpeg')
    directory = tmp_path / 'field' / 'camera' / '20160909T081200'
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(6):
        data = rng.poisson(1000, (240, 320)).astype(np.uint16)
        data[100 + 4 * index:104 + 4 * index, 150:154] = 50000
        fits_fn = directory / f'20160909T0812{index:02d}.fits'
        write_fits(data, {'FILTER': 'RGGB', 'FIELD': 'Test'}, fits_fn)
        make_pretty_image(fits_fn)
        fits_fn.unlink()
    os.link(directory / '20160909T081200.jpg', directory / 'pointing01.jpg')
    return directory


def probe(movie):
    done = subprocess.run(['ffprobe', '-v', 'error', '-count_frames', '-show_entries',
                           'stream=width,height,nb_read_frames,codec_name', '-of', 'json',
                           str(movie)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)['streams'][0]


@pytest.mark.slow
def test_timelapse_of_a_sequence(frames):
    seen = []
    movie = make_timelapse(frames, progress=lambda done, total: seen.append((done, total)))
    assert movie == str(frames / 'field_camera_20160909T081200.mp4')
    stream = probe(movie)
    assert stream['codec_name'] == 'h264'
    assert int(stream['nb_read_frames']) == 6  # the pointing image is left out
    assert seen and seen[-1] == (6, 6)
    assert [p.name for p in frames.iterdir() if p.name.startswith('.')] == []


@pytest.mark.slow
def test_timelapse_frame_is_the_picture(frames, tmp_path):
    movie = make_timelapse(frames, fn_out=tmp_path / 'movie.mp4', fps=2)
    still = tmp_path / 'still.png'
    subprocess.run(['ffmpeg', '-loglevel', 'error', '-i', str(movie), '-frames:v', '1',
                    str(still)], check=True)
    from PIL import Image

    with Image.open(still) as image:
        pixels = np.asarray(image.convert('L'))
    assert pixels.shape == (pixels.shape[0], 160)
    assert np.percentile(pixels, 99.9) > 150 and np.median(pixels) > 5


@pytest.mark.slow
def test_timelapse_overwrite(frames):
    movie = make_timelapse(frames)
    with pytest.raises(FileExistsError):
        make_timelapse(frames)
    assert make_timelapse(frames, overwrite=True) == movie


def test_timelapse_errors(frames, tmp_path, monkeypatch):
    with pytest.raises(NotFound, match='no images match'):
        make_timelapse(frames, glob_pattern='*.png')
    with pytest.raises(FileNotFoundError):
        make_timelapse(tmp_path / 'missing')
    with pytest.raises(Timeout):
        make_timelapse(frames, timeout=0.001)
    assert not (frames / 'field_camera_20160909T081200.mp4').exists()
    assert [p.name for p in frames.iterdir() if p.name.startswith('.')] == []
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(InvalidSystemCommand, match='apt-get install ffmpeg'):
        make_timelapse(frames)


def test_timelapse_ffmpeg_failure_is_reported(tmp_path):
    require_program('ffmpeg')
    (tmp_path / '20160909T081200.jpg').write_bytes(b'not a jpeg at all')
    with pytest.raises(InvalidSystemCommand, match='ffmpeg failed'):
        make_timelapse(tmp_path, fn_out=tmp_path / 'x.mp4')
    assert not (tmp_path / 'x.mp4').exists()
