"""Doctest set-up: the core's doctests never touch the host's PANDIR or config server.

pytest runs the docstring examples with ``--doctest-modules``; this gives each one a
scratch PANDIR and working directory, and points the config client at a closed port.
"""

import socket

import pytest

# Examples that run real programs or servers for a second or more: left out of the
# quick loop (pytest -m "not slow"), by the name of the documented object, so they
# keep their mark when a module is split.
SLOW_DOCTESTS = frozenset({
    'get_solve_field',            # a real solve-field run
    'make_timelapse',             # ffmpeg
    'convert',                    # cr2.convert: dcraw/rawpy and exiftool
    'read_exif',                  # exiftool
    'save_config',                # writes and rereads YAML files
    'protocol_arduinosimulator',  # reads reports at 9600 baud
    'altaz_to_radec',             # astropy's coordinate frames
    'background_summary',         # photutils backgrounds
    'get_rgb_background',
    'cr2_to_fits',                # dcraw/rawpy and exiftool
    'read_exif_batch',            # exiftool
    'plot',                       # matplotlib figures
    'animate_stamp',
    'night',                      # astropy's sun and moon over a whole night
    'add_colorbar',               # matplotlib figures
})


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name.rsplit('.', 1)[-1] in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_doctest_env(tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        closed_port = sock.getsockname()[1]
    (tmp_path / 'pandir').mkdir()
    monkeypatch.setenv('PANDIR', str(tmp_path / 'pandir'))
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'xdg-data'))
    monkeypatch.setenv('PANOPTES_CONFIG_HOST', '127.0.0.1')
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', str(closed_port))
    for name in ('POCSTIME', 'PANOPTES_CONFIG_FILE', 'PANOPTES_DB_TYPE', 'PANOPTES_DB_NAME'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
