"""tests/cr2_maker.py: the CR2 files it writes decode to exactly the raster written."""

import subprocess

import numpy as np
import pytest

from conftest import require_program
from cr2_maker import BAYER_VALUES, bayer_frame, sky_frame, write_cr2

pytest.importorskip('imagecodecs', reason='cr2_maker needs imagecodecs (the test extra)')


def _dcraw_raster(path):
    """The raw photosites as dcraw prints them (-D -4 -t 0: no scaling, no rotation)."""
    pgm = subprocess.run([require_program('dcraw'), '-c', '-D', '-4', '-t', '0', str(path)],
                         capture_output=True, check=True).stdout
    # 'P5\nW H\n65535\n' then big-endian 16-bit samples
    magic, size, maxval, pixels = pgm.split(b'\n', 3)
    width, height = map(int, size.split())
    return np.frombuffer(pixels, dtype='>u2').reshape(height, width)


def _rawpy_raster(path):
    rawpy = pytest.importorskip('rawpy')
    with rawpy.imread(str(path)) as raw:
        return raw.raw_image.copy()


@pytest.mark.parametrize('read', [_dcraw_raster, _rawpy_raster], ids=['dcraw', 'rawpy'])
@pytest.mark.parametrize('raster', [bayer_frame(24, 36), sky_frame(40, 60, seed=3)], ids=['bayer', 'sky'])
def test_decoders_return_the_raster_written(tmp_path, read, raster):
    path = write_cr2(tmp_path / 'frame.cr2', raster)
    np.testing.assert_array_equal(read(path), raster)


def test_bayer_frame_puts_each_colour_on_its_photosites():
    frame = bayer_frame(4, 6)
    red, green1, green2, blue = BAYER_VALUES
    assert frame[0, :2].tolist() == [red, green1] and frame[1, :2].tolist() == [green2, blue]
    with pytest.raises(ValueError, match='even height and width'):
        bayer_frame(5, 6)


def test_command_line_writes_a_bayer_frame_and_its_truth(tmp_path):
    from cr2_maker import main

    main([str(tmp_path / 'b.cr2'), '--bayer', '--height', '24', '--width', '30', '--truth'])
    np.testing.assert_array_equal(np.load(tmp_path / 'b.npy'), bayer_frame(24, 30))
    np.testing.assert_array_equal(_rawpy_raster(tmp_path / 'b.cr2'), bayer_frame(24, 30))
