"""The star list made in process (images/sources.py) is the one solve-field makes itself."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from panoptes_cli.images import fits as pfits
from panoptes_cli.images.sources import on_lines, source_list
from panoptes_cli.images.solve_options import SolveOptions
from conftest import require_program


@pytest.fixture(autouse=True)
def astrometry_programs():
    require_program('solve-field')
    require_program('image2xy')
    require_program('tabsort')


@pytest.fixture
def config(tmp_path, shared_data):
    """A backend config file with only the small index of the KIC 8462852 field."""
    path = tmp_path / 'backend.cfg'
    path.write_text(f"index {shared_data / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'}\n")
    return {'--config': path}


def solve_field_list(image, workdir, downsample, extra=()):
    """The star list of ``solve-field --just-augment``: X and Y in the order it tries them."""
    axy = workdir / 'solve-field.axy'
    subprocess.run(['solve-field', '--just-augment', '--axy', str(axy), '--dir', str(workdir),
                    '--downsample', str(downsample), '--no-plots', '--overwrite', *extra,
                    str(image)], check=True, capture_output=True)
    table = fits.getdata(axy, 1)
    return np.asarray(table['X']), np.asarray(table['Y'])


def our_list(image, workdir, downsample, **options):
    target = workdir / 'ours.xyls'
    count = source_list(image, target, downsample, **options)
    table = fits.getdata(target, 1)
    assert len(table) == count
    return np.asarray(table['X']), np.asarray(table['Y'])


def assert_same_list(image, tmp_path, downsample, extra=(), **options):
    theirs = solve_field_list(image, tmp_path, downsample, extra)
    ours = our_list(image, tmp_path, downsample, **options)
    assert len(ours[0]) > 20
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    return ours


def star_field(path, width, height, stars, seed=7, lines=False):
    """A frame of Gaussian stars on a noisy sky; with ``lines``, a bad column and a bleed row."""
    rng = np.random.default_rng(seed)
    data = rng.normal(2048, 12, (height, width))
    yy, xx = np.mgrid[-4:5, -4:5]
    for x, y, flux in zip(rng.uniform(10, width - 10, stars), rng.uniform(10, height - 10, stars),
                          rng.lognormal(8, 1, stars)):
        ix, iy = int(x), int(y)
        profile = np.exp(-((xx - (x - ix)) ** 2 + (yy - (y - iy)) ** 2) / (2 * 1.5 ** 2))
        data[iy - 4:iy + 5, ix - 4:ix + 5] += flux * profile / profile.sum()
    if lines:
        # Hot pixels all along one column and one row, as a sensor defect or a bleed trail.
        data[::9, width // 3] += 3000
        data[height // 2, ::11] += 3000
    fits.PrimaryHDU(np.clip(data, 0, 65535).astype(np.uint16)).writeto(path)
    return path


@pytest.mark.parametrize('name, downsample', [('unsolved.fits', 2), ('unsolved.fits', 1),
                                              ('tiny.fits', 1)])
def test_same_list_as_solve_field_on_real_frames(data_copy, tmp_path, name, downsample):
    assert_same_list(data_copy(name), tmp_path, downsample)


def test_lines_of_sources_are_removed_as_solve_field_removes_them(tmp_path):
    image = star_field(tmp_path / 'lines.fits', 1200, 800, 400, lines=True)
    x, y = assert_same_list(image, tmp_path, 2)
    assert not np.any(np.abs(x - (1200 // 3 + 1)) < 0.6)  # the column is gone (FITS x is 1-based)
    without = our_list(image, tmp_path, 2, remove_lines=False)
    assert len(without[0]) > len(x) + 30


@pytest.mark.slow
def test_same_list_on_a_full_frame(tmp_path):
    image = star_field(tmp_path / 'full.fits', 5208, 3476, 3000, lines=True)
    assert_same_list(image, tmp_path, 4)


@pytest.mark.parametrize('extra, options', [(['--no-remove-lines'], {'remove_lines': False}),
                                            (['--uniformize', '0'], {'cells': 0}),
                                            (['--uniformize', '4'], {'cells': 4})])
def test_star_list_options_as_solve_field_takes_them(tmp_path, extra, options):
    image = star_field(tmp_path / 'lines.fits', 1200, 800, 400, lines=True)
    assert_same_list(image, tmp_path, 2, extra, **options)


def test_on_lines_keeps_a_sparse_field():
    rng = np.random.default_rng(1)
    assert not on_lines(rng.uniform(0, 5000, 2000)).any()
    assert not on_lines(np.array([])).any()


def test_solution_is_the_one_solve_field_finds_from_the_image(data_copy, config):
    """The same WCS, card for card, whether solve-field or we find the stars."""
    ours, theirs = data_copy('unsolved.fits'), data_copy('unsolved.fits', 'classic.fits')
    pfits.get_solve_field(ours, **config)
    # An option outside the matching ones leaves finding the stars to solve-field.
    pfits.get_solve_field(theirs, **config, **{'--sigma': 0})
    assert SolveOptions(extra_options={'--sigma': 0}).star_list((700, 700)) is None
    mine, classic = pfits.getheader(ours), pfits.getheader(theirs)
    wcs_keys = [key for key in classic if key[:2] in ('CR', 'CD', 'A_', 'B_', 'AP', 'BP', 'CT')]
    assert len(wcs_keys) > 15
    assert {key: mine[key] for key in wcs_keys} == {key: classic[key] for key in wcs_keys}


@pytest.mark.parametrize('missing', ['image2xy', 'tabsort'])
def test_without_the_tools_solve_field_finds_the_stars(data_copy, config, monkeypatch, tmp_path,
                                                       missing):
    """Without image2xy or tabsort (another astrometry.net build) solve-field finds the stars."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for program in Path('/usr/bin').iterdir():
        if program.name != missing:
            (bin_dir / program.name).symlink_to(program)
    monkeypatch.setenv('PATH', str(bin_dir))
    info = pfits.get_solve_field(data_copy('unsolved.fits'), **config)
    assert info['ra_center'].value == pytest.approx(303.21, abs=0.01)
