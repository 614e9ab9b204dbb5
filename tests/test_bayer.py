"""panoptes_cli.images.bayer: the RGGB conventions, stamps and the per-channel background."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptes_cli.error import IllegalValue
from panoptes_cli.images import bayer
from panoptes_cli.images.fits import getdata, getheader

COLOURS = ('R', 'G1', 'G2', 'B')


def test_manual_table_for_a_full_frame():
    # The manual's numpy table: row 0 is G2 B G2 B..., row 3475 is R G1 R G1...
    assert [bayer.get_pixel_color(x, 0) for x in (0, 1, 5206, 5207)] == ['G2', 'B', 'G2', 'B']
    assert [bayer.get_pixel_color(x, 3475) for x in (0, 1, 5206, 5207)] == ['R', 'G1', 'R', 'G1']
    assert bayer.get_pixel_color(2.9, 1.2) == 'R'  # positions truncate to their pixel


@given(x=st.integers(0, 99), y=st.integers(0, 99))
def test_masks_agree_with_pixel_colour(x, y):
    masks = bayer.get_rgb_masks(np.zeros((100, 100)), separate_green=True)
    unmasked = [colour for colour, mask in zip(COLOURS, masks) if not mask[y, x]]
    assert unmasked == [bayer.get_pixel_color(x, y)]


def test_masks_partition_the_frame():
    r_mask, g_mask, b_mask = bayer.get_rgb_masks(np.zeros((6, 8)))
    counts = (~r_mask).astype(int) + (~g_mask) + (~b_mask)
    assert (counts == 1).all()
    assert (~g_mask).sum() == 2 * (~r_mask).sum() == 2 * (~b_mask).sum()


def test_rgb_data_keeps_each_colour_and_stacks():
    data = np.arange(48).reshape(6, 8)
    rgb = bayer.get_rgb_data(data)
    assert rgb.shape == (3, 6, 8)
    np.testing.assert_array_equal(rgb[0].compressed(), data[1::2, 0::2].ravel())
    np.testing.assert_array_equal(rgb[2].compressed(), data[0::2, 1::2].ravel())
    assert sorted(rgb[1].compressed()) == sorted(
        np.concatenate([data[0::2, 0::2].ravel(), data[1::2, 1::2].ravel()]))
    four = bayer.get_rgb_data(np.stack([data, data + 1]), separate_green=True)
    assert four.shape == (4, 2, 6, 8)
    np.testing.assert_array_equal(four[2, 1].compressed(), (data + 1)[0::2, 0::2].ravel())
    # The result is a copy: changing it leaves the frame alone.
    rgb[0, 1, 0] = -1
    assert data[1, 0] == 8


def test_masks_need_2d_data():
    with pytest.raises(IllegalValue):
        bayer.get_rgb_masks(np.zeros(5))


@pytest.mark.slow
@settings(max_examples=200)
@given(x=st.floats(0, 499), y=st.floats(0, 499), k=st.integers(1, 5))
def test_stamps_are_bayer_aligned_and_hold_the_position(x, y, k):
    size = 2 + 4 * k
    rows, cols = bayer.get_stamp_slice(x, y, stamp_size=(size, size))
    assert rows.stop - rows.start == cols.stop - cols.start == size
    # Always a G2 pixel (the top-left of a super-pixel) first...
    assert bayer.get_pixel_color(cols.start, rows.start) == 'G2'
    assert rows.start >= 0 and cols.start >= 0
    # ...and the super-pixel holding the position in the middle, unless at the edge.
    px, py = bayer._nearest_pixel(x), bayer._nearest_pixel(y)
    assert rows.start <= py < rows.stop and cols.start <= px < cols.stop
    if rows.start > 0:
        assert py - py % 2 - rows.start == (size - 2) // 2
    if cols.start > 0:
        assert px - px % 2 - cols.start == (size - 2) // 2


def test_stamp_sizes_must_fit_whole_superpixels():
    for size in (4, 5, 8, 12):
        with pytest.raises(IllegalValue, match='6, 10, 14'):
            bayer.get_stamp_slice(50, 50, stamp_size=(size, size))
    assert bayer.get_stamp_slice(50, 50, stamp_size=(4, 4), ignore_superpixel=True) == (
        slice(48, 52), slice(48, 52))
    with pytest.raises(IllegalValue):
        bayer.get_stamp_slice(50, 50, stamp_size=(0, 0), ignore_superpixel=True)


def test_stamp_near_the_edge_starts_at_the_edge():
    data = np.arange(400).reshape(20, 20)
    rows, cols = bayer.get_stamp_slice(0, 1, stamp_size=(10, 10))
    assert data[rows, cols].shape == (10, 10)
    assert (rows.start, cols.start) == (0, 0)


def _masked_full_frame_background(data, box=84):
    """The manual's method: Background2D on each colour's masked full frame."""
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MeanBackground

    backgrounds = []
    masks = bayer.get_rgb_masks(data)
    for mask in masks:
        backgrounds.append(Background2D(
            data.astype(float), (box, box), mask=mask, filter_size=(3, 3),
            sigma_clip=SigmaClip(sigma=5, maxiters=5), bkg_estimator=MeanBackground(),
            exclude_percentile=100))
    full = np.zeros(data.shape)
    for bkg, mask in zip(backgrounds, masks):
        full[~mask] = bkg.background[~mask]
    return backgrounds, full


@pytest.mark.slow
def test_background_matches_the_masked_full_frame_method(shared_data):
    data = getdata(shared_data / 'unsolved.fits')
    reference, reference_full = _masked_full_frame_background(data)
    ours = bayer.get_rgb_background(shared_data / 'unsolved.fits', return_separate=True)
    for ref, bkg in zip(reference, ours):
        assert bkg.background_median == pytest.approx(ref.background_median, rel=1e-4)
        assert bkg.background_rms_median == pytest.approx(ref.background_rms_median, rel=1e-3)
    full = bayer.get_rgb_background(shared_data / 'unsolved.fits')
    assert full.shape == data.shape
    assert full.mean() == pytest.approx(reference_full.mean(), rel=5e-3)
    np.testing.assert_allclose(full, reference_full, rtol=5e-3)


@pytest.mark.slow
def test_background_of_the_manual_example(shared_data):
    # The manual: data mean 2236.816..., rms medians r 20.566, g 32.787, b 23.820.
    backs = bayer.get_rgb_background(shared_data / 'solved.fits.fz', return_separate=True)
    rms = [bkg.background_rms_median for bkg in backs]
    assert rms == pytest.approx([20.566, 32.787, 23.820], abs=1e-3)


@pytest.mark.slow
def test_background_with_bias_odd_sides_and_arrays():
    rng = np.random.default_rng(1)
    data = (rng.normal(2100, 20, (201, 303))).astype(np.uint16)
    plain = bayer.get_rgb_background(data, box_size=(40, 40))
    biased = bayer.get_rgb_background(data, box_size=(40, 40), camera_bias=2048)
    assert plain.shape == data.shape
    # A bias above some pixel values must not wrap around (uint16 - 2048).
    np.testing.assert_allclose(plain - biased, 2048, atol=1e-2)
    assert np.isfinite(plain).all()
    assert abs(plain[-1].mean() - 2100) < 10 and abs(plain[:, -1].mean() - 2100) < 10


def test_background_options_are_checked():
    data = np.ones((100, 100))
    with pytest.raises(IllegalValue, match='estimator'):
        bayer.get_rgb_background(data, estimator='magic')
    with pytest.raises(IllegalValue, match='interpolator'):
        bayer.get_rgb_background(data, interpolator='idw')
    with pytest.raises(IllegalValue, match='2D'):
        bayer.get_rgb_background(np.ones(10))


def test_background_estimators(shared_data):
    levels = {}
    for estimator in ('mean', 'median', 'mmm', 'sexb'):
        backs = bayer.get_rgb_background(shared_data / 'tiny.fits', box_size=(40, 40),
                                         estimator=estimator, return_separate=True)
        levels[estimator] = backs[0].background_median
    assert max(levels.values()) - min(levels.values()) < 20


@pytest.mark.slow
def test_background_summary_writes_the_background(shared_data, tmp_path):
    output = tmp_path / 'background.fits'
    summary = bayer.background_summary(shared_data / 'unsolved.fits', output=output)
    assert set(summary['channels']) == {'r', 'g', 'b'}
    assert summary['output'] == str(output)
    written = getdata(output)
    assert written.shape == (700, 700)
    assert written.mean() == pytest.approx(summary['mean'], rel=1e-5)
    assert getheader(output)['BUNIT'] == 'adu'
    with pytest.raises(FileExistsError):
        bayer.background_summary(shared_data / 'unsolved.fits', output=output)
    bayer.background_summary(shared_data / 'unsolved.fits', output=output, overwrite=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
