"""panoptes_cli.images.focus: Vollath F4 and the focus-metric dispatcher."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from panoptes_cli.error import IllegalValue
from panoptes_cli.images.focus import focus_metric, focus_metric_file, vollath_F4


def reference_f4(data, axis=None):
    """Vollath F4 written plainly, as the manual defines it."""
    data = np.asarray(data, dtype=np.float64)
    y = (data[1:] * data[:-1]).mean() - (data[2:] * data[:-2]).mean()
    x = (data[:, 1:] * data[:, :-1]).mean() - (data[:, 2:] * data[:, :-2]).mean()
    return {'y': y, 'x': x, None: (x + y) / 2}[axis]


@settings(max_examples=100, deadline=None)
@given(data=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=3,
                                                    max_side=30),
                       elements=st.floats(-1e4, 1e4)),
       axis=st.sampled_from([None, 'x', 'y', 'X', 'Y']))
@pytest.mark.slow
def test_f4_matches_the_definition(data, axis):
    expected = reference_f4(data, None if axis is None else axis.lower())
    assert vollath_F4(data, axis=axis) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_f4_of_integer_frames_does_not_overflow():
    rng = np.random.default_rng(3)
    data = rng.integers(50000, 65535, (64, 80)).astype(np.uint16)
    assert vollath_F4(data) == pytest.approx(reference_f4(data), rel=1e-9)
    assert isinstance(vollath_F4(data), np.float64)


def test_f4_leaves_out_masked_pixels():
    data = np.arange(64.0).reshape(8, 8)
    masked = np.ma.array(data, mask=np.zeros_like(data, dtype=bool))
    masked[3, 3] = np.ma.masked
    value = vollath_F4(masked, axis='x')
    assert np.isfinite(value)
    assert value != vollath_F4(data, axis='x')
    unmasked = np.ma.array(data)
    assert vollath_F4(unmasked) == pytest.approx(vollath_F4(data))


def test_sharper_star_scores_higher():
    yy, xx = np.mgrid[0:64, 0:64]
    scores = []
    for sigma in (1.0, 1.5, 2.5, 4.0):
        star = 1000 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * sigma**2)) / sigma**2
        scores.append(vollath_F4(star + 100))
    assert scores == sorted(scores, reverse=True)


def test_bad_axis_and_shape():
    with pytest.raises(IllegalValue, match='axis'):
        vollath_F4(np.ones((5, 5)), axis='z')
    with pytest.raises(ValueError):
        vollath_F4(np.ones(5))


def test_focus_metric_by_name_or_callable():
    data = np.arange(25.0).reshape(5, 5)
    assert focus_metric(data) == vollath_F4(data)
    assert focus_metric(data, 'vollath_F4', axis='y') == vollath_F4(data, axis='y')
    assert focus_metric(data, np.max) == 24.0
    with pytest.raises(KeyError, match='not_a_metric'):
        focus_metric(data, 'not_a_metric')


def test_focus_of_files(shared_data):
    from panoptes_cli.images.fits import getdata

    fits_value = focus_metric_file(shared_data / 'tiny.fits')
    assert fits_value == pytest.approx(vollath_F4(getdata(shared_data / 'tiny.fits')))
    truth = np.load(shared_data / 'cr2' / 'synthetic.npy')
    assert focus_metric_file(shared_data / 'cr2' / 'synthetic.cr2', axis='x') == pytest.approx(
        vollath_F4(truth, axis='x'))
