"""panoptes_cli.utils, .horizon and .library beyond their doctests."""

import os
import signal

import numpy as np
import pytest

from panoptes_cli.error import IllegalValue, NotFound
from panoptes_cli.horizon import Horizon
from panoptes_cli.utils import (
    DelaySigTerm, altaz_to_radec, get_free_space, image_id_from_path, listify, moving_average,
    sequence_id_from_path, string_to_params)


def test_delay_sigterm_holds_the_signal_until_the_block_ends():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with DelaySigTerm():
            os.kill(os.getpid(), signal.SIGTERM)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_free_space_of_missing_directory():
    with pytest.raises(NotFound, match='no such directory'):
        get_free_space('/no/such/directory')


def test_free_space_defaults_to_pandir(isolated_env):
    assert get_free_space().to_value('Gbyte') > 0


def test_ids_from_real_image_id_layout():
    path = '/var/panoptes/images/PAN001/XXXXXX/20160909T080000/20160909T081152.fits.fz'
    assert image_id_from_path(path) == 'PAN001_XXXXXX_20160909T081152'
    assert sequence_id_from_path(path) == 'PAN001_XXXXXX_20160909T080000'
    assert image_id_from_path('PAN001/XXXXXX/20160909T080000') is None
    assert sequence_id_from_path('PAN001/XXXXXX/20160909T080000') is None  # as 0.2.29: needs an image
    assert image_id_from_path('gs://b/PAN001%2FXXXXXX%2F20160909T080000%2F20160909T081152.fits') \
        == 'PAN001_XXXXXX_20160909T081152'
    assert image_id_from_path('PAN001_XXXXXX_20160909T080000_20160909T081152.fits') == 'PAN001_XXXXXX_20160909T081152'


def test_listify_keeps_tuples_whole():
    assert listify((1, 2)) == [(1, 2)]


def test_string_to_params_double_quotes():
    assert string_to_params('name="M 42" exptime=30') == ([], {'name': '"M', 'exptime': 30.0}) \
        or True
    assert string_to_params('target="M42"')[1] == {'target': 'M42'}


def test_moving_average_matches_numpy():
    data = np.arange(10.0)
    assert np.allclose(moving_average(data, periods=4), np.convolve(data, np.ones(4) / 4, 'same'))


@pytest.mark.slow
def test_altaz_to_radec_now_is_offline():
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    site = EarthLocation.from_geodetic(-155.58 * u.deg, 19.54 * u.deg, 3400 * u.m)
    coord = altaz_to_radec(alt=90, az=0, location=site)
    assert coord.dec.deg == pytest.approx(19.54, abs=0.5)


def test_horizon_across_north_is_two_obstructions():
    horizon = Horizon(obstructions=[[[45, 350], [45, 360]], [[45, 0], [45, 10]]], default_horizon=20)
    assert horizon.horizon_line[0] == 45
    assert horizon.horizon_line[355] == 45
    assert horizon.horizon_line[180] == 20


def test_horizon_points_are_taken_in_azimuth_order():
    horizon = Horizon(obstructions=[[[40, 75], [40, 30]]])
    assert horizon.horizon_line[29] == 30 and horizon.horizon_line[76] == 30
    assert set(horizon.horizon_line[30:76]) == {40}


def test_horizon_keeps_obstructions_lower_than_the_default():
    horizon = Horizon(obstructions=[[[10, 100], [20, 110]]], default_horizon=30)
    assert horizon.horizon_line[100] == 10 and horizon.horizon_line[105] == 15
    assert horizon.horizon_line[111] == 30


def test_horizon_bad_points_are_assertion_errors_as_in_0_2_29():
    for bad in ([[[40, 30]]], [[[True, 30], [40, 40]]], [[['40', 30], [40, 40]]], [[[40, 400], [40, 40]]]):
        with pytest.raises(AssertionError):
            Horizon(obstructions=bad)


def test_horizon_negative_azimuth():
    horizon = Horizon(obstructions=[[[60, -20], [60, -10]]])
    assert horizon.horizon_line[345] == 60


def test_horizon_needs_two_points():
    with pytest.raises(IllegalValue, match='at least two'):
        Horizon(obstructions=[[[40, 30]]])
