"""Side by side with panoptes-utils 0.2.29: what a caller of the old API can observe.

Each case is a small snippet written once against a module prefix ``P``. It runs here
against ``panoptes_cli`` and is checked against the documented value; the same snippet
runs in the 0.2.29 baseline venv (``$PANOPTES_BASELINE_VENV``, default
``/tmp/baseline-venv``) in one subprocess, and our result must match that one too. Where
the baseline is not installed, that half is skipped with the reason.

A snippet sets ``result`` to something JSON can hold. ``raised(call)`` gives the builtin
exception classes the call's error derives from. Cases whose name starts with "raises"
hold lists of those: ours must include every class 0.2.29 raised (and the documented
ones), so every ``except`` a 0.2.29 caller wrote still catches our error, which may
also be a PanError and more.
"""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import SHARED_DATA, free_port

BASELINE_VENV = Path(os.environ.get('PANOPTES_BASELINE_VENV', '/tmp/baseline-venv'))
BASELINE_PYTHON = BASELINE_VENV / 'bin' / 'python'

PRELUDE = '''
import builtins, importlib, json, os, sys, tempfile
from pathlib import Path

def module(name):
    return importlib.import_module(P + '.' + name if name else P)

def raised(call):
    try:
        call()
    except Exception as err:
        return sorted(cls.__name__ for cls in type(err).__mro__
                      if getattr(builtins, cls.__name__, None) is cls and cls not in (BaseException, Exception, object))
    return None

def caught(call):
    try:
        call()
    except Exception as err:
        return err
'''

# name -> (snippet, documented result). ``FREE_PORT`` is replaced by a port nothing listens on.
CASES = {
    'horizon points are sorted by azimuth': ('''
        Horizon = module('horizon').Horizon
        line = Horizon(obstructions=[[[40, 75], [40, 30]]]).horizon_line
        result = [round(float(line[az]), 6) for az in (29, 30, 50, 75, 76)]
    ''', [30.0, 40.0, 40.0, 40.0, 30.0]),
    'horizon keeps obstructions below the default': ('''
        Horizon = module('horizon').Horizon
        line = Horizon(obstructions=[[[10, 100], [20, 110]]], default_horizon=30).horizon_line
        result = [round(float(line[az]), 6) for az in (99, 100, 105, 110, 111)]
    ''', [30.0, 10.0, 15.0, 20.0, 30.0]),
    'raises: horizon bad points, AssertionError': ('''
        Horizon = module('horizon').Horizon
        result = [raised(lambda: Horizon(obstructions=bad))
                  for bad in ([[[40, 30]]], [[[95, 30], [40, 75]]], [[[True, 30], [40, 75]]])]
    ''', [['AssertionError']] * 3),
    'moving_average gives one value per input': ('''
        values = module('utils').moving_average([1, 2, 3, 4, 5, 6], periods=3)
        result = [round(float(v), 6) for v in values]
    ''', [1.0, 2.0, 3.0, 4.0, 5.0, 3.666667]),
    'ids from URL-encoded paths': ('''
        utils = module('utils')
        path = 'gs://bucket/PAN012%2Fee04d1%2F20190820T111638%2F20190820T122447.fits'
        result = [utils.image_id_from_path(path), utils.sequence_id_from_path(path),
                  utils.image_id_from_path('PAN012_ee04d1_20190820T111638_20190820T122447.fits'),
                  utils.sequence_id_from_path('PAN012/ee04d1/20190820T111638')]
    ''', ['PAN012_ee04d1_20190820T122447', 'PAN012_ee04d1_20190820T111638',
          'PAN012_ee04d1_20190820T122447', None]),
    'current_time(datetime=True) is timezone-aware UTC': ('''
        now = module('time').current_time(datetime=True)
        result = [type(now).__name__, str(now.tzinfo), now.utcoffset().total_seconds()]
    ''', ['datetime', 'UTC', 0.0]),
    'get_config with no server returns the default': ('''
        client = module('config.client')
        result = client.get_config('name', host='127.0.0.1', port=FREE_PORT, default='PAN000')
    ''', 'PAN000'),
    'set_config with no server returns None': ('''
        client = module('config.client')
        result = client.set_config('name', 'x', host='127.0.0.1', port=FREE_PORT)
    ''', None),
    'load_config of a missing file loads its _local file': ('''
        helpers = module('config.helpers')
        where = Path(tempfile.mkdtemp())
        (where / 'pocs_local.yaml').write_text('name: Local Unit\\n')
        result = dict(helpers.load_config([str(where / 'pocs.yaml')]))
    ''', {'name': 'Local Unit'}),
    'save_config creates missing directories': ('''
        helpers = module('config.helpers')
        where = Path(tempfile.mkdtemp()) / 'new' / 'conf_files'
        saved = helpers.save_config(str(where / 'pocs.yaml'), {'name': 'Saved'})
        result = [saved, sorted(p.name for p in where.iterdir())]
    ''', [True, ['pocs_local.yaml']]),
    'get_wcsinfo: 0.2.29 keys, Quantities with units': ('''
        import shutil, subprocess
        where = Path(tempfile.mkdtemp())
        shutil.copy(SHARED_DATA + '/solved.fits.fz', where)
        subprocess.run(['funpack', str(where / 'solved.fits.fz')], check=True)
        info = module('images.fits').get_wcsinfo(str(where / 'solved.fits'))
        # Only 0.2.29's numeric keys: ours adds wcsinfo's text values.
        result = {key: [type(value).__name__, str(getattr(value, 'unit', ''))]
                  for key, value in info.items() if key not in ('fieldunits', 'ra_center_hms', 'dec_center_dms')}
        result['pixscale'].append(round(info['pixscale'].value, 3))
        result['dec_center_m'][1] = 'arcmin or min'  # 0.2.29 said time minutes; the unit is arcminutes
        result['dec_center_s'][1] = 'arcsec or s'
    ''', {**{key: ['Quantity', unit] for key, unit in [
        ('crpix0', 'pix'), ('crpix1', 'pix'), ('crval0', 'deg'), ('crval1', 'deg'), ('imagew', 'pix'),
        ('imageh', 'pix'), ('cd11', 'deg / pix'), ('cd12', 'deg / pix'), ('cd21', 'deg / pix'),
        ('cd22', 'deg / pix'), ('orientation', 'deg'), ('ra_center', 'deg'),
        ('dec_center', 'deg'), ('orientation_center', 'deg'), ('ra_center_h', 'hourangle'),
        ('ra_center_m', 'min'), ('ra_center_s', 's'), ('dec_center_d', 'deg'),
        ('dec_center_m', 'arcmin or min'), ('dec_center_s', 'arcsec or s'), ('fieldarea', 'deg2'),
        ('fieldw', 'deg'), ('fieldh', 'deg'), ('decmin', 'deg'), ('decmax', 'deg'), ('ramin', 'deg'),
        ('ramax', 'deg'), ('ra_min_merc', 'deg'), ('ra_max_merc', 'deg'), ('dec_min_merc', 'deg'),
        ('dec_max_merc', 'deg'), ('merc_diff', 'deg')]},
       **{key: ['float', ''] for key in ('ra_tangent', 'dec_tangent', 'pixx_tangent', 'pixy_tangent', 'det',
                                         'parity', 'dec_center_sign', 'ra_center_merc', 'dec_center_merc',
                                         'merczoom')},
       'pixscale': ['Quantity', 'arcsec / pix', 10.32], 'wcs_file': ['str', '']}),
    # Exceptions: every builtin 0.2.29 raised must still catch ours.
    'raises: CountdownTimer bad duration, ValueError then AssertionError': ('''
        CountdownTimer = module('time').CountdownTimer
        result = [raised(lambda: CountdownTimer('ten')), raised(lambda: CountdownTimer(-1)),
                  raised(lambda: CountdownTimer(5).sleep(max_sleep=-1))]
    ''', [['ValueError'], ['AssertionError'], ['AssertionError']]),
    'raises: altaz_to_radec without a location, AssertionError': ('''
        result = [raised(lambda: module('utils').altaz_to_radec(alt=35, az=90))]
    ''', [['AssertionError']]),
    'raises: focus_metric unknown merit function, KeyError; vollath_F4 bad axis, ValueError': ('''
        import numpy as np
        focus = module('images.focus')
        result = [raised(lambda: focus.focus_metric(np.ones((10, 10)), 'nope')),
                  raised(lambda: focus.vollath_F4(np.ones((10, 10)), axis='z'))]
    ''', [['KeyError', 'LookupError'], ['ValueError']]),
    'raises: load_c_library with a bad path, OSError': ('''
        library = module('library')
        result = [raised(lambda: library.load_c_library('c', path='/nonexistent/libc.so'))]
    ''', [['OSError']]),
    'raises: get_rgb_data of 4-D data, TypeError; get_stamp_slice bad size, RuntimeError': ('''
        import numpy as np
        bayer = module('images.bayer')
        result = [raised(lambda: bayer.get_rgb_data(np.ones((2, 2, 2, 2)))),
                  raised(lambda: bayer.get_stamp_slice(100, 100, stamp_size=(11, 11)))]
    ''', [['TypeError'], ['RuntimeError']]),
    'raises: crop_data with a box too big, AssertionError': ('''
        import numpy as np
        result = [raised(lambda: module('images').crop_data(np.ones((10, 10)), box_width=20))]
    ''', [['AssertionError']]),
    'raises: FITS readers on a missing file, FileNotFoundError': ('''
        fits = module('images.fits')
        result = [raised(lambda: read('/nonexistent/frame.fits'))
                  for read in (fits.getdata, fits.getheader, fits.getwcs, lambda f: fits.getval(f, 'SIMPLE'))]
    ''', [['FileNotFoundError', 'OSError']] * 4),
    'raises: FITS readers on a directory and on a file that is not FITS, OSError': ('''
        fits = module('images.fits')
        text = Path(tempfile.mkdtemp()) / 'notes.fits'
        text.write_text('not a FITS file\\n' * 400)
        result = [raised(lambda: fits.getdata(tempfile.gettempdir())), raised(lambda: fits.getdata(str(text)))]
    ''', [['IsADirectoryError', 'OSError'], ['OSError']]),
    'raises: get_wcsinfo, fpack, funpack on a missing file, AssertionError': ('''
        fits = module('images.fits')
        result = [raised(lambda: fits.get_wcsinfo('/nonexistent/frame.fits')),
                  raised(lambda: fits.fpack('/nonexistent/frame.fits')),
                  raised(lambda: fits.funpack('/nonexistent/frame.fits.fz'))]
    ''', [['AssertionError']] * 3),
    'raises: get_solve_field on a missing file, FileNotFoundError': ('''
        result = [raised(lambda: module('images.fits').get_solve_field('/nonexistent/frame.fits'))]
    ''', [['FileNotFoundError', 'OSError']]),
    'raises: cr2 readers on a missing file, AssertionError (read_exif) and InvalidSystemCommand': ('''
        cr2, error = module('images.cr2'), module('error')
        result = [raised(lambda: cr2.read_exif('/nonexistent/frame.cr2'))] + [
            [isinstance(caught(lambda: convert('/nonexistent/frame.cr2')), error.InvalidSystemCommand)]
            for convert in (cr2.cr2_to_fits, cr2.cr2_to_pgm)]
    ''', [['AssertionError'], [True], [True]]),
    'raises: read_pgm on a missing file, FileNotFoundError; on a non-PGM, AssertionError': ('''
        cr2 = module('images.cr2')
        bad = Path(tempfile.mkdtemp()) / 'bad.pgm'
        bad.write_bytes(b'P6\\n2 2\\n255\\n' + bytes(12))
        result = [raised(lambda: cr2.read_pgm('/nonexistent/frame.pgm')), raised(lambda: cr2.read_pgm(str(bad)))]
    ''', [['FileNotFoundError', 'OSError'], ['AssertionError']]),
    'raises: SerialData without a port, ValueError': ('''
        result = [raised(lambda: module('rs232').SerialData(port=None))]
    ''', [['ValueError']]),
    'raises: SocialSlack without a webhook_url, ValueError': ('''
        result = [raised(lambda: module('social.slack').SocialSlack())]
    ''', [['ValueError']]),
    'raises: buffers:// write of a str, TypeError': ('''
        import serial
        module('serial_handlers')
        if P + '.serial_handlers' not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(P + '.serial_handlers')
        port = serial.serial_for_url('buffers://', timeout=0)
        result = [raised(lambda: port.write('text'))]
    ''', [['TypeError']]),
    'raises: permanently_erase_database of a non-test db, ValueError': ('''
        PanDB = module('database').PanDB
        result = [raised(lambda: PanDB.permanently_erase_database('file', 'production', really='Yes', dangerous='Totally'))]
    ''', [['ValueError']]),
    'raises: serializers on bad input, no builtin': ('''
        serializers = module('serializers')
        result = [raised(lambda: serializers.from_json('{not json')), raised(lambda: serializers.from_yaml('a: [1'))]
    ''', [[], []]),
}


def _program(snippets: dict, prefix: str, port: int) -> str:
    """One script running every snippet and printing ``{name: result or error}`` as JSON."""
    parts = [f'P = {prefix!r}', PRELUDE, 'results = {}']
    for name, code in snippets.items():
        code = textwrap.dedent(code).replace('FREE_PORT', str(port)).replace('SHARED_DATA', repr(str(SHARED_DATA)))
        body = textwrap.indent(code, '    ')
        parts.append(f'try:\n{body}\n    results[{name!r}] = result\n'
                     f'except Exception as err:\n    results[{name!r}] = {{"error": repr(err)}}')
    parts.append('sys.stdout.write("\\n" + json.dumps(results) + "\\n")')
    return '\n'.join(parts)


def _run(python: str, snippets: dict, prefix: str, env: dict | None = None) -> dict:
    done = subprocess.run([python, '-c', _program(snippets, prefix, free_port())], capture_output=True,
                          text=True, timeout=300, env=env, cwd='/')
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope='module')
def ours(tmp_path_factory):
    import sys

    env = dict(os.environ, PANOPTES_CONFIG_FILE=str(tmp_path_factory.mktemp('conf') / 'none.yaml'))
    return _run(sys.executable, {name: code for name, (code, _) in CASES.items()}, 'panoptes_cli', env)


@pytest.fixture(scope='module')
def baseline(tmp_path_factory):
    if not BASELINE_PYTHON.exists():
        pytest.skip(f'panoptes-utils 0.2.29 is not installed at {BASELINE_VENV} '
                    '(set PANOPTES_BASELINE_VENV to compare side by side)')
    env = {'PATH': os.environ['PATH'], 'HOME': str(tmp_path_factory.mktemp('home')),
           'PANDIR': str(tmp_path_factory.mktemp('pandir'))}
    return _run(str(BASELINE_PYTHON), {name: code for name, (code, _) in CASES.items()}, 'panoptes.utils', env)


def _check(name: str, got, expected) -> None:
    if not name.startswith('raises'):
        assert got == expected
        return
    assert isinstance(got, list) and len(got) == len(expected), got
    for position, (ours_classes, their_classes) in enumerate(zip(got, expected)):
        assert their_classes is not None, f'item {position}: 0.2.29 raised nothing here'
        assert ours_classes is not None, f'item {position}: nothing raised, expected {their_classes}'
        assert set(their_classes) <= set(ours_classes), f'item {position}'


@pytest.mark.slow
@pytest.mark.parametrize('name', CASES)
def test_documented_value(ours, name):
    _check(name, ours[name], CASES[name][1])


@pytest.mark.slow
@pytest.mark.parametrize('name', CASES)
def test_same_as_0_2_29(ours, baseline, name):
    _check(name, ours[name], baseline[name])


def _prose_lines(path: Path) -> list:
    """A file's non-blank lines, whitespace squeezed; doctest lines and their output as None."""
    lines, in_example = [], False
    for raw in path.read_text(errors='replace').splitlines():
        text = ' '.join(raw.split())
        if not text:
            in_example = False
            continue
        in_example = in_example or text.startswith(('>>>', '...'))
        lines.append(None if in_example else text)
    return lines


def _runs(lines: list, length: int = 6):
    for start in range(len(lines) - length + 1):
        run = lines[start:start + length]
        if None not in run:
            yield tuple(run)


def test_no_run_of_six_lines_shared_with_0_2_29_outside_examples():
    """Our sources are our own: none repeats six lines of 0.2.29's (its >>> examples aside)."""
    from conftest import REPO_ROOT

    theirs_root = BASELINE_VENV / 'lib' / 'python3.11' / 'site-packages' / 'panoptes' / 'utils'
    if not theirs_root.is_dir():
        pytest.skip(f'panoptes-utils 0.2.29 sources are not at {theirs_root}')
    theirs = {run for path in theirs_root.rglob('*.py') for run in _runs(_prose_lines(path))}
    ours = [path for folder in ('panoptes_cli', 'commands', 'tests', 'docs')
            for path in (REPO_ROOT / folder).rglob('*.py')]
    shared = [f'{path.relative_to(REPO_ROOT)}: {run[0]!r}...' for path in ours
              for run in _runs(_prose_lines(path)) if run in theirs]
    assert not shared, '\n'.join(shared[:20])
