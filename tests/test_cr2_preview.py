"""panoptes_cli.images.preview and ``panoptes cr2 preview``: the camera's embedded JPEG."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from cr2_maker import cr2_bytes, preview_jpeg, sky_frame, write_cr2
from panoptes_cli.images.preview import (
    NoPreview, _preview_with_exiftool, extract_preview, read_preview)

pytest.importorskip('imagecodecs', reason='cr2_maker needs imagecodecs (the test extra)')

RASTER = sky_frame(60, 90, seed=5)


def _orientation(path):
    with Image.open(path) as picture:
        return picture.getexif().get(0x0112, 1)


def _red(path_or_bytes):
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as picture:
        return np.asarray(picture.convert('RGB'))[..., 0].astype(int)


@pytest.fixture
def frame(tmp_path):
    """A CR2 with an upright preview, and the preview's bytes."""
    jpeg = preview_jpeg(RASTER)
    return write_cr2(tmp_path / 'upright.cr2', RASTER, preview=jpeg), jpeg


def test_upright_preview_is_copied_without_decoding(frame, tmp_path):
    cr2, jpeg = frame
    output = extract_preview(cr2)
    assert output == str(tmp_path / 'upright.jpg')
    # LibRaw puts an EXIF segment (make, model, date) before the camera's JPEG stream.
    written = (tmp_path / 'upright.jpg').read_bytes()
    assert written.endswith(jpeg[jpeg.index(b'\xff\xdb'):])
    np.testing.assert_array_equal(_red(written), _red(jpeg))
    assert read_preview(cr2)[1] == 1


def test_the_raw_still_decodes_exactly_with_a_preview(frame):
    rawpy = pytest.importorskip('rawpy')
    with rawpy.imread(str(frame[0])) as raw:
        np.testing.assert_array_equal(raw.raw_image, RASTER)


@pytest.mark.parametrize('orientation, turn', [
    (6, lambda a: np.rot90(a, k=-1)),      # shown turned 90 degrees clockwise
    (8, lambda a: np.rot90(a, k=1)),       # 90 degrees anticlockwise
    (3, lambda a: np.rot90(a, k=2)),
    (2, np.fliplr),
])
def test_orientation_is_applied(tmp_path, orientation, turn):
    jpeg = preview_jpeg(RASTER)
    cr2 = write_cr2(tmp_path / 'turned.cr2', RASTER, preview=jpeg, orientation=orientation)
    result = _red(extract_preview(cr2))
    expected = turn(_red(jpeg))
    assert result.shape == expected.shape
    assert _orientation(tmp_path / 'turned.jpg') == 1
    # Turned pictures are encoded again: compare within JPEG noise.
    assert np.abs(result - expected).mean() < 2


@pytest.mark.slow
def test_exiftool_finds_the_same_preview(frame):
    cr2, jpeg = frame
    assert _preview_with_exiftool(cr2, timeout=30) == (jpeg, 1)


def test_no_preview_and_no_file(tmp_path):
    tmp_path = tmp_path / 'frames'
    tmp_path.mkdir()
    cr2 = write_cr2(tmp_path / 'bare.cr2', RASTER)
    with pytest.raises(NoPreview, match='no embedded preview'):
        extract_preview(cr2)
    with pytest.raises(NoPreview):
        _preview_with_exiftool(cr2, timeout=30)
    with pytest.raises(FileNotFoundError):
        extract_preview(tmp_path / 'missing.cr2')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bare.cr2']


def test_existing_output_is_kept_unless_overwrite(frame, tmp_path):
    cr2, jpeg = frame
    (tmp_path / 'upright.jpg').write_bytes(b'old')
    with pytest.raises(FileExistsError):
        extract_preview(cr2)
    assert (tmp_path / 'upright.jpg').read_bytes() == b'old'
    extract_preview(cr2, overwrite=True)
    np.testing.assert_array_equal(_red(tmp_path / 'upright.jpg'), _red(jpeg))


def test_cli_batch_goes_on_after_a_bad_file(cli, frame, tmp_path):
    cr2, jpeg = frame
    (tmp_path / 'out').mkdir()
    truncated = tmp_path / 'truncated.cr2'
    truncated.write_bytes(cr2_bytes(RASTER, preview=jpeg)[:200])
    result = cli('cr2', 'preview', '-o', tmp_path / 'out', truncated, cr2)
    assert result.exit_code == 1
    assert result.stderr.startswith(f'Error: {truncated}: ') and result.stderr.count('\n') == 1
    assert json.loads(result.stdout) == {'filename': str(cr2), 'output': str(tmp_path / 'out' / 'upright.jpg')}
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['upright.jpg']


def test_cli_output_file_for_a_web_cam(cli, frame, tmp_path):
    cr2, jpeg = frame
    latest = tmp_path / 'latest.jpg'
    for _ in range(2):
        result = cli('cr2', 'preview', '--overwrite', '--output', latest, cr2)
        assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(_red(latest), _red(jpeg))
    assert cli('cr2', 'preview', '--output', latest, cr2, cr2).exit_code == 2
    assert cli('cr2', 'preview', '--output', latest, cr2).exit_code == 1
